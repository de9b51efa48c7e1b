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

    // Each is a setting declared in RunSettings, which gives its flag and help; `settings(environment:)`
    // (RunCommand+Settings.swift) reads it with its variable, default and range.
    @Option(RunSettings.concurrency) var concurrency: String?
    @Option(RunSettings.lease) var lease: String?
    @Option(RunSettings.pollInterval) var pollInterval: String?
    @Option(RunSettings.shutdownTimeout) var shutdownTimeout: String?
    @Option(RunSettings.retrySchedule) var retrySchedule: String?
    @Option(RunSettings.requestTimeout) var requestTimeout: String?
    @Flag(RunSettings.allowHTTP) var allowHTTP: Bool
    @Flag(RunSettings.allowPrivateNetworks) var allowPrivateNetworks: Bool
    @Option(RunSettings.mcpEndpointBase) var mcpEndpointBase: String?
    @Option(RunSettings.userAgent) var userAgent: String?
    @Option(RunSettings.proxyURL) var proxyURL: String?
    @Option(RunSettings.operationalURL) var operationalURL: String?
    @Option(RunSettings.workerID) var workerID: String?
    @Option(RunSettings.httpPort) var httpPort: String?
    @Option(RunSettings.httpHost) var httpHost: String?
    @Flag(RunSettings.console) var console: Bool
    @Flag(RunSettings.consoleReadOnly) var consoleReadOnly: Bool
    @Option(RunSettings.statementTimeout) var statementTimeout: String?
    @Option(RunSettings.lockTimeout) var lockTimeout: String?
    @Option(RunSettings.synchronousCommit) var synchronousCommit: String?
    @Option(RunSettings.claimWithOutcomes) var claimWithOutcomes: String?
    @Option(RunSettings.claimGatherWait) var claimGatherWait: String?
    @Option(RunSettings.secretOverlap) var secretOverlap: String?
    @Option(RunSettings.endpointConcurrency) var endpointConcurrency: String?
    @Option(RunSettings.endpointMaxConcurrency) var endpointMaxConcurrency: String?
    @Option(RunSettings.endpointFailureThreshold) var endpointFailureThreshold: String?
    @Option(RunSettings.endpointCooldown) var endpointCooldown: String?
    @Option(RunSettings.endpointDisableAfter) var endpointDisableAfter: String?
    @Option(RunSettings.listenDatabaseURL) var listenDatabaseURL: String?
    @Option(RunSettings.preparedStatements) var preparedStatements: String?
    @Option(RunSettings.poolSize) var poolSize: String?
    @Option(RunSettings.catchUpInterval) var catchUpInterval: String?
    @Option(RunSettings.catchUpWindow) var catchUpWindow: String?
    @Option(RunSettings.keyRepairInterval) var keyRepairInterval: String?
    @Option(RunSettings.historyRetention) var historyRetention: String?
    @Option(RunSettings.historyPartition) var historyPartition: String?

    func run() async throws {
        let logger = try logging.bootstrap()
        let environment = ProcessInfo.processInfo.environment
        var settings = try self.settings(environment: environment)
        logger.info("effective settings", metadata: settings.logged)
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
            Gauge(label: DeliveryMetricNames.worker.buildInfo, dimensions: [("version", BuildInfo.version)]).record(1)
        }

        let connection = try await connectOrExit(
            settings.queue.conninfo, preparedStatements: settings.queue.preparedStatements)
        try await WebhookWorkerSchema.migrator.migrate(connection, logger: logger)
        await connection.close()

        // Handlers' statements run under the same timeouts as the worker's own.
        let pool = PQConnectionPool(
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
                        database: pool, kinds: Set(worker.kinds), interval: .seconds(10),
                        endpointConcurrency: settings.delivery.endpointConcurrency, logger: logger)))
        }
        if let catchUp = settings.catchUp {
            services.append(
                .init(
                    service: IntegrationCatchUpService(
                        catchUp: IntegrationCatchUp(configuration: catchUp), database: pool, logger: logger)))
        }
        let operational = settings.operational.map { OperationalWebhooks(configuration: $0) }
        if let operational {
            services.append(
                .init(
                    service: OperationalWebhookService(
                        relay: operational, database: pool,
                        listenConninfo: settings.queue.listenConninfo ?? settings.queue.conninfo, logger: logger)))
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
            try? await operational?.shutdown()
            await pool.close()
        }
    }
}
