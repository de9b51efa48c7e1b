import Foundation
import LibPQ

/// One receiving endpoint (an OAuth client with a webhook URL, or one with a circuit row) and its
/// recent health, for a console's endpoints page.
public struct EndpointOverview: Sendable, Equatable {
    public let oauthClientID: String
    /// `client:<OAuth client id>`, the key of ``Endpoints`` operations.
    public var key: String { EndpointCircuit.key(client: oauthClientID) }
    public let clientName: String?
    public let clientPublicID: String?
    /// The webhook URL redacted by ``URLRedaction``, as stored attempts, errors and spans show it.
    public let redactedURL: String?
    public let clientActive: Bool
    /// `closed`, `open`, `half_open` or `disabled` (`closed` when it never failed).
    public let state: String
    public let consecutiveFailures: Int
    public let nextProbeAt: Date?
    public let disabledAt: Date?
    public let disabledBy: String?
    public let lastError: String?
    public let lastSuccessAt: Date?
    public let lastFailureAt: Date?
    /// Attempts in the window, and those that got a 2xx.
    public let attempts: Int
    public let succeeded: Int
    /// Mean and 95th percentile of the attempts' durations in the window, nil without attempts.
    public let meanLatencyMilliseconds: Double?
    public let p95LatencyMilliseconds: Double?
    public let pendingDeliveries: Int
    /// `fifo` or `none` (``EndpointOrdering``).
    public let ordering: String
    /// The operator's limits (``EndpointLimits``): nil is adaptive, and no rate limit.
    public var maxInFlight: Int? = nil
    public var rateLimit: Double? = nil
    /// What the claim holds the endpoint to now, across replicas (``EndpointLoad``).
    public var load = EndpointLoad()

    /// Percent of attempts in the window that got a 2xx, nil without attempts.
    public var successRate: Double? { attempts == 0 ? nil : 100 * Double(succeeded) / Double(attempts) }
    public var isDisabled: Bool { state == "disabled" }
}

extension Endpoints {
    static let overview = PQQuery(
        "endpointOverview",
        """
        WITH clients AS (
            SELECT id, name, "clientId" AS public_id, "webhookUrl" AS url, "isActive" AS active FROM "OAuthClient"
            WHERE coalesce("webhookUrl", '') <> ''
        ), keys AS (
            SELECT id AS oauth_client_id FROM clients
            UNION SELECT substr(key, 8) FROM webhook_worker.endpoints
        ), recent AS (
            SELECT d.oauth_client_id, count(*) AS attempts,
                   count(*) FILTER (WHERE a.http_status BETWEEN 200 AND 299) AS succeeded,
                   avg(a.duration_ms)::float8 AS mean_ms,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms)::float8 AS p95_ms
            FROM webhook_worker.delivery_attempts a JOIN webhook_worker.webhook_deliveries d USING (delivery_id)
            WHERE a.attempted_at > now() - make_interval(secs => $1)
            GROUP BY d.oauth_client_id
        ), status AS (
            SELECT concurrency_key, max_running, ordered, running, waiting FROM webhook_worker.concurrency_key_status
            WHERE kind = 'webhook.deliver'
        )
        SELECT k.oauth_client_id, c.name AS client_name, c.public_id, c.url, coalesce(c.active, false) AS active,
               coalesce(e.state, 'closed') AS state, coalesce(e.consecutive_failures, 0) AS consecutive_failures,
               e.next_probe_at, e.disabled_at, e.disabled_by, e.last_error, e.last_success_at, e.last_failure_at,
               e.max_in_flight, e.rate_limit,
               coalesce(r.attempts, 0) AS attempts, coalesce(r.succeeded, 0) AS succeeded, r.mean_ms, r.p95_ms,
               (SELECT count(*) FROM webhook_worker.webhook_deliveries p
                WHERE p.oauth_client_id = k.oauth_client_id AND p.status = 'pending') AS pending,
               CASE WHEN s.ordered THEN 'fifo' ELSE 'none' END AS ordering,
               \(EndpointLoad.columns)
        FROM keys k
        LEFT JOIN clients c ON c.id = k.oauth_client_id
        LEFT JOIN webhook_worker.endpoints e ON e.key = 'client:' || k.oauth_client_id
        LEFT JOIN recent r ON r.oauth_client_id = k.oauth_client_id
        LEFT JOIN status s ON s.concurrency_key = 'client:' || k.oauth_client_id
        ORDER BY CASE coalesce(e.state, 'closed') WHEN 'disabled' THEN 0 WHEN 'open' THEN 1 WHEN 'half_open' THEN 2
                 ELSE 3 END, coalesce(e.consecutive_failures, 0) DESC, c.name NULLS LAST, k.oauth_client_id
        LIMIT $2
        """)

    /// Every endpoint: each OAuth client with a webhook URL and each endpoint with a circuit row,
    /// worst first, with its success rate and latency over the last `window`. Reads the web app's
    /// `"OAuthClient"` table.
    public func overview(window: Duration = .seconds(86_400), limit: Int = 500) async throws -> [EndpointOverview] {
        let seconds = Double(window.components.seconds)
        return try await connection.query(Self.overview, [seconds, limit]).rows.map { row in
            EndpointOverview(
                oauthClientID: try row.decode("oauth_client_id"), clientName: try row.decodeIfPresent("client_name"),
                clientPublicID: try row.decodeIfPresent("public_id"),
                redactedURL: try row.decodeIfPresent("url", as: String.self).map(URLRedaction.redacted),
                clientActive: try row.decode("active"), state: try row.decode("state"),
                consecutiveFailures: try row.decode("consecutive_failures"),
                nextProbeAt: try row.decodeIfPresent("next_probe_at"),
                disabledAt: try row.decodeIfPresent("disabled_at"),
                disabledBy: try row.decodeIfPresent("disabled_by"), lastError: try row.decodeIfPresent("last_error"),
                lastSuccessAt: try row.decodeIfPresent("last_success_at"),
                lastFailureAt: try row.decodeIfPresent("last_failure_at"), attempts: try row.decode("attempts"),
                succeeded: try row.decode("succeeded"), meanLatencyMilliseconds: try row.decodeIfPresent("mean_ms"),
                p95LatencyMilliseconds: try row.decodeIfPresent("p95_ms"), pendingDeliveries: try row.decode("pending"),
                ordering: try row.decode("ordering"), maxInFlight: try row.decodeIfPresent("max_in_flight"),
                rateLimit: try row.decodeIfPresent("rate_limit"), load: try EndpointLoad(row))
        }
    }
}
