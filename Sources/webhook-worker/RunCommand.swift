import ArgumentParser
import Foundation
import JobQueue
import LibPQ
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import TraceExport
import WebhookDelivery
import WebhookWorkerSchema

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Migrate if needed, then work jobs until SIGTERM or SIGINT.",
        discussion: """
            Every setting is a flag or an environment variable; the flag wins. Durations are written \
            250ms, 5s, 5m, 2h or 1d. A bad value stops the worker at start with one line naming it \
            and exit status 2.
            """)

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var logging: LoggingOptions

    @Option(help: "Jobs in flight per replica. Env: WORKER_CONCURRENCY. Default: 128.")
    var concurrency: String?
    @Option(
        help:
            """
            How long a claim holds a job before other replicas may take it back; renewed while the job runs. Env: \
            WORKER_LEASE. Default: 60s.
            """
    )
    var lease: String?
    @Option(
        name: .customLong("poll-interval"),
        help: "Fallback rescan when no notification arrives. Env: WORKER_POLL_INTERVAL. Default: 2s.")
    var pollInterval: String?
    @Option(
        name: .customLong("shutdown-timeout"),
        help:
            """
            Time in-flight jobs get to finish on SIGTERM before they are released. Env: WORKER_SHUTDOWN_TIMEOUT. \
            Default: 30s.
            """
    )
    var shutdownTimeout: String?
    @Option(
        name: .customLong("retry-schedule"),
        help:
            """
            Waits between delivery attempts, comma-separated, ±20% jitter. Env: WEBHOOK_RETRY_SCHEDULE. Default: \
            5s,5m,30m,2h,5h,10h,10h.
            """
    )
    var retrySchedule: String?
    @Option(
        name: .customLong("request-timeout"),
        help: "Whole-request timeout of one delivery attempt. Env: WEBHOOK_REQUEST_TIMEOUT. Default: 15s.")
    var requestTimeout: String?
    @Flag(
        name: .customLong("allow-http"),
        help: "Allow http:// webhook URLs (development). Env: WEBHOOK_ALLOW_HTTP=1. Default: off.")
    var allowHTTP = false
    @Flag(
        name: .customLong("allow-private-networks"),
        help:
            """
            Allow loopback, private and link-local destinations (development). Env: WEBHOOK_ALLOW_PRIVATE_NETWORKS=1. \
            Default: off.
            """
    )
    var allowPrivateNetworks = false
    @Option(
        name: .customLong("mcp-endpoint-base"),
        help: "Base of the payload's mcp_endpoint. Env: MCP_ENDPOINT_BASE. Default: mcp://core.ai.")
    var mcpEndpointBase: String?
    @Option(
        name: .customLong("user-agent"),
        help: "User-Agent of webhook requests. Env: WEBHOOK_USER_AGENT. Default: Echo-OAuth-Webhooks/1.0.")
    var userAgent: String?
    @Option(
        name: .customLong("worker-id"),
        help: "This replica's name in locked_by and attempt rows. Env: WORKER_ID. Default: host-pid-random.")
    var workerID: String?
    @Option(
        name: .customLong("http-port"),
        help: "Serve /metrics, /healthz and /readyz on this port. Env: WORKER_HTTP_PORT. Default: off.")
    var httpPort: String?
    @Option(name: .customLong("http-host"), help: "Address for --http-port. Env: WORKER_HTTP_HOST. Default: 0.0.0.0.")
    var httpHost: String?
    @Flag(
        name: .customLong("console"),
        help:
            """
            Also serve the operator web console under /console on --http-port (see `console --help`; a non-loopback \
            --http-host needs WORKER_CONSOLE_TOKEN). Env: WORKER_CONSOLE=1. Default: off.
            """
    )
    var console = false
    @Flag(
        name: .customLong("console-read-only"),
        help: "The console's pages only, every action refused. Env: WORKER_CONSOLE_READ_ONLY=1. Default: off.")
    var consoleReadOnly = false
    @Option(
        name: .customLong("statement-timeout"),
        help:
            """
            The longest one statement of the worker may run; a job whose statement times out is released and retried \
            later without spending an attempt. Env: WORKER_STATEMENT_TIMEOUT. Default: 10s.
            """
    )
    var statementTimeout: String?
    @Option(
        name: .customLong("lock-timeout"),
        help:
            """
            The longest a statement waits for a lock (a table the web app locked); then the job is released and \
            retried later without spending an attempt. Env: WORKER_LOCK_TIMEOUT. Default: 2s.
            """
    )
    var lockTimeout: String?
    @Option(
        name: .customLong("synchronous-commit"),
        help:
            """
            on: every outcome is durable before the next job (the default). off: the worker's own commits do not wait \
            for the disk; faster, and a PostgreSQL crash may forget the last moment's outcomes, whose jobs then run \
            again. Env: WORKER_SYNCHRONOUS_COMMIT. Default: on.
            """
    )
    var synchronousCommit: String?
    @Option(
        name: .customLong("secret-overlap"),
        help:
            """
            How long a client's previous webhook secret (retired by the optional trigger or `secrets retire`) keeps \
            signing beside the new one. Env: WEBHOOK_SECRET_OVERLAP. Default: 24h.
            """
    )
    var secretOverlap: String?
    @Option(
        name: .customLong("endpoint-concurrency"),
        help:
            """
            Deliveries to one endpoint (one OAuth client) in flight at once, across all replicas. Env: \
            WEBHOOK_ENDPOINT_CONCURRENCY. Default: 4.
            """
    )
    var endpointConcurrency: String?
    @Option(
        name: .customLong("endpoint-failure-threshold"),
        help:
            """
            Failures in a row (timeouts, connection errors, 5xx) that open an endpoint's circuit. Env: \
            WEBHOOK_ENDPOINT_FAILURE_THRESHOLD. Default: 5.
            """
    )
    var endpointFailureThreshold: String?
    @Option(
        name: .customLong("endpoint-cooldown"),
        help:
            """
            How long an open circuit waits before one probe delivery; doubles with each trip, up to 32 times. Env: \
            WEBHOOK_ENDPOINT_COOLDOWN. Default: 30s.
            """
    )
    var endpointCooldown: String?
    @Option(
        name: .customLong("endpoint-disable-after"),
        help:
            """
            An endpoint failing this long without a single success is disabled until an operator enables it. Env: \
            WEBHOOK_ENDPOINT_DISABLE_AFTER. Default: 5d.
            """
    )
    var endpointDisableAfter: String?
    @Option(
        name: .customLong("listen-database-url"),
        help:
            """
            Where the LISTEN connection goes, when --database-url is a transaction pooler (PgBouncer): PostgreSQL \
            itself. Env: WORKER_LISTEN_DATABASE_URL. Default: --database-url.
            """
    )
    var listenDatabaseURL: String?
    @Option(
        name: .customLong("prepared-statements"),
        help:
            """
            on: statements are prepared by name and settings kept in the session. off: for a transaction pooler \
            (PgBouncer before 1.21): unnamed statements, settings per transaction. Env: WORKER_PREPARED_STATEMENTS. \
            Default: on.
            """
    )
    var preparedStatements: String?
    @Option(
        name: .customLong("database-pool-size"),
        help:
            """
            Connections shared by this replica's jobs (plus five of its own: LISTEN, claiming, lease upkeep, two \
            writing outcomes). Env: WORKER_DB_POOL_SIZE. Default: 8.
            """
    )
    var poolSize: String?
    @Option(
        name: .customLong("catch-up-interval"),
        help:
            """
            How often one replica looks for integration accounts whose integration.connected event was never \
            enqueued (the optional trigger failed, or the web app stopped before enqueueing), and enqueues it; an \
            account is swept once it is this old; off: never (accounts not inserted as connections, e.g. test \
            data). Env: WEBHOOK_CATCH_UP_INTERVAL. Default: 1m.
            """
    )
    var catchUpInterval: String?
    @Option(
        name: .customLong("catch-up-window"),
        help:
            """
            How far back the catch-up looks for such accounts. Env: WEBHOOK_CATCH_UP_WINDOW. Default: 1d.
            """
    )
    var catchUpWindow: String?
    @Option(
        name: .customLong("key-repair-interval"),
        help:
            """
            How often one replica checks the per-endpoint concurrency keys for one that a race left parked with free \
            slots (or behind its first due job) and mends it (a warning and webhook_worker_keys_repaired_total); \
            off: never. Env: WORKER_KEY_REPAIR_INTERVAL. Default: 30s.
            """
    )
    var keyRepairInterval: String?

    struct Settings {
        var queue: JobWorkerConfiguration
        var delivery: WebhookDeliveryConfiguration
        var poolSize: Int
        var httpPort: Int?
        var httpHost: String
        /// The web console on the operations server, when enabled.
        var console: ConsoleSettings?
        /// Export spans (OTLP): an endpoint is set in the `OTEL_*` variables.
        var traces: Bool
        /// nil: `--catch-up-interval off`.
        var catchUp: IntegrationCatchUp.Configuration?
    }

    func settings(environment env: [String: String]) throws -> Settings {
        func source(_ flag: String, _ variable: String, _ value: String?) -> SettingSource {
            SettingSource(flag, variable, value, env: env)
        }
        let scheduleSource = source("retry-schedule", "WEBHOOK_RETRY_SCHEDULE", retrySchedule)
        var policy = ScheduleRetryStrategy.standard
        if let text = scheduleSource.value {
            guard let parsed = DurationText.schedule(text) else {
                throw SettingError(
                    description:
                        "invalid \(scheduleSource.name) '\(text)': expected comma-separated durations like 5s,5m,30m,2h"
                )
            }
            policy = parsed
        }
        let leaseValue = try source("lease", "WORKER_LEASE", lease).duration(
            default: .seconds(60), minimum: .seconds(1))
        let requestTimeoutValue = try source("request-timeout", "WEBHOOK_REQUEST_TIMEOUT", requestTimeout)
            .duration(default: .seconds(15), minimum: .milliseconds(100))
        guard leaseValue > requestTimeoutValue + .seconds(1) else {
            throw SettingError(
                description:
                    """
                    invalid --lease (WORKER_LEASE) \(DurationText.format(leaseValue)): it must exceed \
                    --request-timeout (\(DurationText.format(requestTimeoutValue))) by more than 1s, or a job could \
                    lose its lease mid-request
                    """
            )
        }
        let mcpBase = source("mcp-endpoint-base", "MCP_ENDPOINT_BASE", mcpEndpointBase)
        if let value = mcpBase.value, URLComponents(string: value)?.scheme == nil {
            throw SettingError(description: "invalid \(mcpBase.name) '\(value)': expected a URL such as mcp://core.ai")
        }
        let agent = source("user-agent", "WEBHOOK_USER_AGENT", userAgent)
        if let value = agent.value, value.contains(where: { $0.isNewline || $0 == "\0" }) {
            throw SettingError(description: "invalid \(agent.name): it must be one line")
        }
        let worker = source("worker-id", "WORKER_ID", workerID)
        if let value = worker.value, value.count > 200 || value.contains(where: \.isNewline) {
            throw SettingError(description: "invalid \(worker.name): at most 200 characters on one line")
        }

        var queue = JobWorkerConfiguration(
            conninfo: database.conninfo,
            schema: WebhookWorkerSchema.queue,
            applicationName: "webhook-worker",
            workerID: worker.value ?? JobWorkerConfiguration.defaultWorkerID(),
            concurrency: try source("concurrency", "WORKER_CONCURRENCY", concurrency).integer(
                default: 128, range: 1...10_000),
            lease: leaseValue,
            pollInterval: try source("poll-interval", "WORKER_POLL_INTERVAL", pollInterval)
                .duration(default: .seconds(2), minimum: .milliseconds(10)),
            shutdownTimeout: try source("shutdown-timeout", "WORKER_SHUTDOWN_TIMEOUT", shutdownTimeout)
                .duration(default: .seconds(30), minimum: .zero),
            retryStrategy: policy,
            statementTimeout: try source("statement-timeout", "WORKER_STATEMENT_TIMEOUT", statementTimeout)
                .duration(default: .seconds(10), minimum: .milliseconds(100)),
            lockTimeout: try source("lock-timeout", "WORKER_LOCK_TIMEOUT", lockTimeout)
                .duration(default: .seconds(2), minimum: .milliseconds(10)),
            asynchronousCommit:
                !(try source("synchronous-commit", "WORKER_SYNCHRONOUS_COMMIT", synchronousCommit)
                .onOff(default: true)),
            listenConninfo: source("listen-database-url", "WORKER_LISTEN_DATABASE_URL", listenDatabaseURL).value,
            preparedStatements: try source("prepared-statements", "WORKER_PREPARED_STATEMENTS", preparedStatements)
                .onOff(default: true))
        var delivery = WebhookDeliveryConfiguration(
            retryStrategy: policy,
            requestTimeout: requestTimeoutValue,
            allowHTTP: try source("allow-http", "WEBHOOK_ALLOW_HTTP", nil).boolean(flagSet: allowHTTP),
            allowPrivateNetworks: try source("allow-private-networks", "WEBHOOK_ALLOW_PRIVATE_NETWORKS", nil)
                .boolean(flagSet: allowPrivateNetworks),
            mcpEndpointBase: mcpBase.value ?? "mcp://core.ai",
            userAgent: agent.value ?? "Echo-OAuth-Webhooks/1.0")
        delivery.connectionsPerHost = queue.concurrency
        delivery.secretOverlap = try source("secret-overlap", "WEBHOOK_SECRET_OVERLAP", secretOverlap)
            .duration(default: .seconds(86_400), minimum: .zero)
        delivery.endpointConcurrency = try source(
            "endpoint-concurrency", "WEBHOOK_ENDPOINT_CONCURRENCY", endpointConcurrency
        )
        .integer(default: 4, range: 1...10_000)
        delivery.failureThreshold = try source(
            "endpoint-failure-threshold", "WEBHOOK_ENDPOINT_FAILURE_THRESHOLD", endpointFailureThreshold
        ).integer(default: 5, range: 1...1_000_000)
        delivery.cooldown = try source("endpoint-cooldown", "WEBHOOK_ENDPOINT_COOLDOWN", endpointCooldown)
            .duration(default: .seconds(30), minimum: .milliseconds(10))
        delivery.maxCooldown = delivery.cooldown * 32
        delivery.disableAfter = try source(
            "endpoint-disable-after", "WEBHOOK_ENDPOINT_DISABLE_AFTER", endpointDisableAfter
        )
        .duration(default: .seconds(5 * 86_400), minimum: .seconds(1))
        let pool = try source("database-pool-size", "WORKER_DB_POOL_SIZE", poolSize).integer(default: 8, range: 1...500)
        let portSource = source("http-port", "WORKER_HTTP_PORT", httpPort)
        let port: Int? = portSource.value == nil ? nil : try portSource.integer(default: 0, range: 1...65535)
        let host = source("http-host", "WORKER_HTTP_HOST", httpHost).value ?? "0.0.0.0"
        var consoleSettings: ConsoleSettings?
        if try source("console", "WORKER_CONSOLE", nil).boolean(flagSet: console) {
            guard let port else {
                throw SettingError(description: "--console (WORKER_CONSOLE) needs --http-port (WORKER_HTTP_PORT)")
            }
            consoleSettings = ConsoleSettings(
                host: host, port: port,
                readOnly: try source("console-read-only", "WORKER_CONSOLE_READ_ONLY", nil).boolean(
                    flagSet: consoleReadOnly),
                tokens: try ConsoleSettings.tokens(
                    host: host, environment: env, flag: "--http-host (WORKER_HTTP_HOST)"),
                hosts: try ConsoleSettings.hosts(bound: host, flags: [], environment: env))
        }
        let traces = TraceExport.isEnabled(env)
        if traces {
            do {
                try TraceExport.validate(env)
            } catch {
                throw SettingError(description: "\(error)")
            }
        }
        let repairSource = source("key-repair-interval", "WORKER_KEY_REPAIR_INTERVAL", keyRepairInterval)
        if repairSource.value?.lowercased() == "off" {
            queue.keyRepairInterval = nil
        } else {
            queue.keyRepairInterval = try repairSource.duration(default: .seconds(30), minimum: .milliseconds(100))
        }
        var catchUp = IntegrationCatchUp.Configuration()
        let intervalSource = source("catch-up-interval", "WEBHOOK_CATCH_UP_INTERVAL", catchUpInterval)
        let catchUpOff = intervalSource.value?.lowercased() == "off"
        if !catchUpOff {
            catchUp.interval = try intervalSource.duration(default: catchUp.interval, minimum: .milliseconds(100))
        }
        catchUp.window = try source("catch-up-window", "WEBHOOK_CATCH_UP_WINDOW", catchUpWindow)
            .duration(default: catchUp.window, minimum: .seconds(1))
        guard catchUp.window > catchUp.interval else {
            throw SettingError(
                description:
                    """
                    invalid --catch-up-window (WEBHOOK_CATCH_UP_WINDOW) \(DurationText.format(catchUp.window)): it \
                    must exceed --catch-up-interval (\(DurationText.format(catchUp.interval))), or no account is ever \
                    swept
                    """
            )
        }
        return Settings(
            queue: queue, delivery: delivery, poolSize: pool, httpPort: port, httpHost: host, console: consoleSettings,
            traces: traces, catchUp: catchUpOff ? nil : catchUp)
    }

    func run() async throws {
        let logger = try logging.bootstrap()
        let environment = ProcessInfo.processInfo.environment
        var settings = try self.settings(environment: environment)
        logger.info(
            "effective settings",
            metadata: [
                "version": "\(BuildInfo.version)",
                "database_url": "\(redactedConninfo(settings.queue.conninfo))",
                "listen_database_url": "\(redactedConninfo(settings.queue.listenConninfo ?? settings.queue.conninfo))",
                "prepared_statements": "\(settings.queue.preparedStatements ? "on" : "off")",
                "worker_id": "\(settings.queue.workerID)",
                "concurrency": "\(settings.queue.concurrency)",
                "lease": "\(DurationText.format(settings.queue.lease))",
                "poll_interval": "\(DurationText.format(settings.queue.pollInterval))",
                "shutdown_timeout": "\(DurationText.format(settings.queue.shutdownTimeout))",
                "statement_timeout": "\(DurationText.format(settings.queue.statementTimeout))",
                "lock_timeout": "\(DurationText.format(settings.queue.lockTimeout))",
                "synchronous_commit": "\(settings.queue.asynchronousCommit ? "off" : "on")",
                "retry_schedule": "\(settings.delivery.retryStrategy)",
                "request_timeout": "\(DurationText.format(settings.delivery.requestTimeout))",
                "allow_http": "\(settings.delivery.allowHTTP)",
                "allow_private_networks": "\(settings.delivery.allowPrivateNetworks)",
                "mcp_endpoint_base": "\(settings.delivery.mcpEndpointBase)",
                "user_agent": "\(settings.delivery.userAgent)",
                "database_pool_size": "\(settings.poolSize)",
                "endpoint_concurrency": "\(settings.delivery.endpointConcurrency)",
                "secret_overlap": "\(DurationText.format(settings.delivery.secretOverlap))",
                "endpoint_failure_threshold": "\(settings.delivery.failureThreshold)",
                "endpoint_cooldown": "\(DurationText.format(settings.delivery.cooldown))",
                "endpoint_disable_after": "\(DurationText.format(settings.delivery.disableAfter))",
                "http_port": "\(settings.httpPort.map(String.init) ?? "off")",
                "console": "\(settings.console.map { $0.readOnly ? "read-only" : "on" } ?? "off")",
                "traces": "\(settings.traces ? "otlp" : "off")",
                "catch_up_interval": "\(settings.catchUp.map { DurationText.format($0.interval) } ?? "off")",
                "catch_up_window": "\(settings.catchUp.map { DurationText.format($0.window) } ?? "off")",
            ])
        // Spans go to the OTLP endpoint of the OTEL_* variables; without one, none is created.
        let traces: TraceExport.Backend?
        do {
            traces = try TraceExport.make(environment: environment, logger: logger)
        } catch {
            throw SettingError(description: "could not set up the trace exporter: \(error)")
        }
        settings.queue.tracing = JobTracing(traces?.tracer)

        let registry = PrometheusCollectorRegistry()
        if settings.httpPort != nil {
            var factory = PrometheusMetricsFactory(registry: registry)
            factory.defaultDurationHistogramBuckets = [
                .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
                .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
                .seconds(15),
                .seconds(30),
            ]
            MetricsSystem.bootstrap(factory)
            Gauge(label: "webhook_worker_build_info", dimensions: [("version", BuildInfo.version)]).record(1)
        }

        let connection = try await connectOrExit(
            settings.queue.conninfo, preparedStatements: settings.queue.preparedStatements)
        try await WebhookWorkerSchema.migrator.migrate(connection, logger: logger)
        await connection.close()

        // Handlers' statements run under the same timeouts as the worker's own.
        let pool = PostgresConnectionPool(
            configuration: settings.queue.databasePool(maxConnections: settings.poolSize), logger: logger)
        let sender = WebhookSender(configuration: settings.delivery)
        let worker = JobWorker(
            configuration: settings.queue,
            handlers: WorkerHandlers.make(delivery: settings.delivery, sender: sender),
            database: pool, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let traces {
            // First in, last out: the spans of the last jobs are sent after the worker drains.
            services.append(.init(service: traces.service))
        }
        if let port = settings.httpPort {
            // First in, last out: metrics and health stay up while the worker drains.
            services.append(
                .init(
                    service: OperationsServer.make(
                        host: settings.httpHost, port: port, registry: registry, worker: worker, database: pool,
                        console: settings.console.map {
                            Console(
                                database: pool, tokens: $0.tokens, hosts: $0.hosts, readOnly: $0.readOnly,
                                logger: logger)
                        },
                        logger: logger)))
            services.append(
                .init(
                    service: QueueSampler(
                        database: pool, kinds: Set(worker.kinds), interval: .seconds(10), logger: logger)))
        }
        if let catchUp = settings.catchUp {
            services.append(
                .init(
                    service: IntegrationCatchUpService(
                        catchUp: IntegrationCatchUp(configuration: catchUp), database: pool, logger: logger)))
        }
        services.append(.init(service: worker))
        let group = ServiceGroup(
            configuration: .init(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        // The HTTP client and the pool are closed however the services end (a port in use
        // throws), before the error reaches the exit handling.
        try await withTeardown {
            try await group.run()
        } teardown: {
            try? await sender.shutdown()
            await pool.close()
        }
    }
}
