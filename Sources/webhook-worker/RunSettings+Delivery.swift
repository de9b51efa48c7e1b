import Foundation
import WebhookDelivery

/// The delivery side's settings of `run`, and its HTTP server's.
extension RunSettings {
    // MARK: Deliveries

    static let retrySchedule = Setting(
        flag: "retry-schedule", variable: "WEBHOOK_RETRY_SCHEDULE", .schedule,
        default: .value("5s,5m,30m,2h,5h,10h,10h"),
        summary: "Waits between delivery attempts, comma-separated, ±20% jitter.",
        docs: "One attempt more than the steps.")
    static let requestTimeout = Setting(
        flag: "request-timeout", variable: "WEBHOOK_REQUEST_TIMEOUT", .duration(minimum: .milliseconds(100)),
        default: .value("15s"), summary: "Whole-request timeout of one delivery attempt.",
        docs: "Name resolution, the request and reading the response, cut off within 50 ms of it.")
    static let allowHTTP = Setting(
        flag: "allow-http", variable: "WEBHOOK_ALLOW_HTTP", .toggle, default: .absent("off"),
        summary: "Allow http:// webhook URLs (development).")
    static let allowPrivateNetworks = Setting(
        flag: "allow-private-networks", variable: "WEBHOOK_ALLOW_PRIVATE_NETWORKS", .toggle, default: .absent("off"),
        summary: "Allow loopback, private and link-local destinations (development).")
    static let proxyURL = Setting(
        flag: "proxy-url", variable: "WEBHOOK_PROXY_URL",
        .text(problem: { text in
            do {
                _ = try EgressProxy(url: text)
                return nil
            } catch {
                return " \(error)"
            }
        }),
        default: .absent("off"),
        summary: """
            Send every delivery through this HTTP proxy with CONNECT (http://[user:password@]host:port), to the \
            address the worker resolved and checked.
            """,
        docs: "See [An egress proxy](#an-egress-proxy).", logged: .url)
    static let operationalURL = Setting(
        flag: "operational-url", variable: "WEBHOOK_OPERATIONAL_URL",
        .text(problem: { text in
            guard let url = URLComponents(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""),
                url.host?.isEmpty == false
            else { return " '\(URLRedaction.redacted(text))': expected an http:// or https:// URL" }
            return nil
        }),
        default: .absent("off"),
        summary: """
            Also POST every operational event (circuit opened or recovered, endpoint disabled or enabled, delivery \
            failed), signed, to this endpoint of the web app's.
            """,
        docs: "See [Operational events](#operational-events).", logged: .url)
    static let operationalSecret = Setting(
        flag: "operational-secret", variable: "WEBHOOK_OPERATIONAL_SECRET", .text(problem: { _ in nil }),
        default: .absent("unsigned"),
        summary: """
            Signs the POSTs to --operational-url as deliveries are signed (a whsec_ secret or any string).
            """,
        logged: .secret, environmentOnly: true)
    static let mcpEndpointBase = Setting(
        flag: "mcp-endpoint-base", variable: "MCP_ENDPOINT_BASE",
        .text(problem: {
            URLComponents(string: $0)?.scheme == nil ? " '\($0)': expected a URL such as mcp://core.ai" : nil
        }),
        default: .value("mcp://core.ai"), summary: "Base of the payload's mcp_endpoint.")
    static let userAgent = Setting(
        flag: "user-agent", variable: "WEBHOOK_USER_AGENT",
        .text(problem: { $0.contains(where: { $0.isNewline || $0 == "\0" }) ? ": it must be one line" : nil }),
        default: .value("Echo-OAuth-Webhooks/1.0"), summary: "User-Agent of webhook requests.")
    static let secretOverlap = Setting(
        flag: "secret-overlap", variable: "WEBHOOK_SECRET_OVERLAP", .duration(minimum: .zero), default: .value("24h"),
        summary: """
            How long a client's previous webhook secret (retired by the optional trigger or `secrets retire`) keeps \
            signing beside the new one.
            """,
        docs: "`prune` reads it too.")

    // MARK: History

    static let historyRetention = Setting(
        flag: "history-retention", variable: "WEBHOOK_HISTORY_RETENTION",
        .duration(minimum: .seconds(3_600), off: true), default: .value("30d"),
        summary: """
            How long deliveries, delivery attempts and job attempts are kept: the replicas, taking turns, drop the \
            daily partitions whose rows are all older (webhook_worker_history_partitions_dropped_total); off: keep \
            them.
            """,
        docs: """
            Dead letters keep their own retention (`dead-letters purge`). See \
            [database.md](database.md#partitioned-history).
            """)
    static let historyPartition = Setting(
        flag: "history-partition", variable: "WEBHOOK_HISTORY_PARTITION",
        .duration(minimum: .seconds(3_600)), default: .value("1d"),
        summary: """
            The span of time of one partition of the history tables, at most 31d; partitions are created three \
            spans (at least three days) ahead.
            """,
        docs: "Changing it applies to the partitions created from then on.")

    // MARK: Endpoints

    static let endpointConcurrency = Setting(
        flag: "endpoint-concurrency", variable: "WEBHOOK_ENDPOINT_CONCURRENCY", .integer(1...10_000),
        default: .value("4"),
        summary: """
            Deliveries in flight at once, across all replicas, to an endpoint (one OAuth client) before its \
            adaptive limit has moved: its starting limit.
            """)
    static let endpointMaxConcurrency = Setting(
        flag: "endpoint-max-concurrency", variable: "WEBHOOK_ENDPOINT_MAX_CONCURRENCY", .integer(1...10_000),
        default: .value("64"),
        summary: """
            The most an endpoint's adaptive limit grows to (deliveries in flight at once across all replicas); \
            never more than half this replica's --concurrency.
            """)
    static let endpointFailureThreshold = Setting(
        flag: "endpoint-failure-threshold", variable: "WEBHOOK_ENDPOINT_FAILURE_THRESHOLD",
        .integer(1...1_000_000), default: .value("5"),
        summary: "Failures in a row (timeouts, connection errors, 5xx) that open an endpoint's circuit.")
    static let endpointCooldown = Setting(
        flag: "endpoint-cooldown", variable: "WEBHOOK_ENDPOINT_COOLDOWN", .duration(minimum: .milliseconds(10)),
        default: .value("30s"),
        summary: "How long an open circuit waits before one probe delivery; doubles with each trip, up to 32 times.")
    static let endpointDisableAfter = Setting(
        flag: "endpoint-disable-after", variable: "WEBHOOK_ENDPOINT_DISABLE_AFTER", .duration(minimum: .seconds(1)),
        default: .value("5d"),
        summary: "An endpoint failing this long without a single success is disabled until an operator enables it.")

    // MARK: Catching up integration events

    static let catchUpInterval = Setting(
        flag: "catch-up-interval", variable: "WEBHOOK_CATCH_UP_INTERVAL",
        .duration(minimum: .milliseconds(100), off: true), default: .value("1m"),
        summary: """
            How often one replica looks for integration accounts whose integration.connected event was never \
            enqueued (the optional trigger failed, or the web app stopped before enqueueing), and enqueues it; an \
            account is swept once it is this old; off: never (accounts not inserted as connections, e.g. test \
            data).
            """,
        docs: """
            See [enqueueing.md](enqueueing.md#without-changing-the-web-apps-code-the-optional-trigger); \
            `scripts/chaos` and `scripts/bench` turn it off, as they send their events themselves.
            """)
    static let catchUpWindow = Setting(
        flag: "catch-up-window", variable: "WEBHOOK_CATCH_UP_WINDOW", .duration(minimum: .seconds(1)),
        default: .value("1d"), summary: "How far back the catch-up looks for such accounts.",
        docs: "More than `--catch-up-interval`.")

    // MARK: Metrics, health and the console

    static let httpPort = Setting(
        flag: "http-port", variable: "WORKER_HTTP_PORT", .integer(1...65535), default: .absent("off"),
        summary: "Serve /metrics, /healthz and /readyz on this port.")
    static let httpHost = Setting(
        flag: "http-host", variable: "WORKER_HTTP_HOST", .text(problem: { _ in nil }), default: .value("0.0.0.0"),
        summary: "Address for --http-port.")
    static let console = Setting(
        flag: "console", variable: "WORKER_CONSOLE", .toggle, default: .absent("off"),
        summary: """
            Also serve the operator web console under /console on --http-port (see `console --help`; a non-loopback \
            --http-host needs WORKER_CONSOLE_TOKEN).
            """,
        docs: "See [The web console](#the-web-console).")
    static let consoleReadOnly = Setting(
        flag: "console-read-only", variable: "WORKER_CONSOLE_READ_ONLY", .toggle, default: .absent("off"),
        summary: "The console's pages only, every action refused.")
}
