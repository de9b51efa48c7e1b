import Foundation
import JobQueue
import Logging
import TraceExport
import WebhookDelivery
import WebhookWorkerSchema

extension RunCommand {
    /// What `run` works with, read from its flags and the environment.
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
        /// nil without `--operational-url`.
        var operational: OperationalWebhooks.Configuration?
        /// The `effective settings` log line: every setting's effective value, no secret.
        var logged: Logger.Metadata
    }

    /// Reads every setting of ``RunSettings`` by its declaration, then checks those that depend on
    /// each other.
    func settings(environment env: [String: String]) throws -> Settings {
        var read = SettingsReader(environment: env)
        read.note(RunSettings.databaseURL, database.conninfo ?? "")
        let policy = try read.schedule(RunSettings.retrySchedule, retrySchedule)
        let leaseValue = try read.duration(RunSettings.lease, lease)
        let requestTimeoutValue = try read.duration(RunSettings.requestTimeout, requestTimeout)
        guard leaseValue > requestTimeoutValue + .seconds(1) else {
            throw SettingError(
                description:
                    """
                    invalid \(RunSettings.lease.name) \(DurationText.format(leaseValue)): it must exceed \
                    --\(RunSettings.requestTimeout.flag) (\(DurationText.format(requestTimeoutValue))) by more than \
                    1s, or a job could lose its lease mid-request
                    """
            )
        }
        let mcpBase = try read.text(RunSettings.mcpEndpointBase, mcpEndpointBase)
        let agent = try read.text(RunSettings.userAgent, userAgent)
        let workerID =
            try read.optionalText(RunSettings.workerID, workerID) ?? JobWorkerConfiguration.defaultWorkerID()
        read.note(RunSettings.workerID, workerID)
        let listen = try read.optionalText(RunSettings.listenDatabaseURL, listenDatabaseURL)
        read.note(RunSettings.listenDatabaseURL, listen ?? database.conninfo ?? "")

        var queue = JobWorkerConfiguration(
            conninfo: database.conninfo,
            schema: WebhookWorkerSchema.queue,
            applicationName: "webhook-worker",
            workerID: workerID,
            concurrency: try read.integer(RunSettings.concurrency, concurrency),
            lease: leaseValue,
            pollInterval: try read.duration(RunSettings.pollInterval, pollInterval),
            shutdownTimeout: try read.duration(RunSettings.shutdownTimeout, shutdownTimeout),
            retryStrategy: policy,
            statementTimeout: try read.duration(RunSettings.statementTimeout, statementTimeout),
            lockTimeout: try read.duration(RunSettings.lockTimeout, lockTimeout),
            asynchronousCommit: !(try read.onOff(RunSettings.synchronousCommit, synchronousCommit)),
            listenConninfo: listen,
            preparedStatements: try read.onOff(RunSettings.preparedStatements, preparedStatements))
        var delivery = WebhookDeliveryConfiguration(
            retryStrategy: policy,
            requestTimeout: requestTimeoutValue,
            allowHTTP: try read.toggle(RunSettings.allowHTTP, flagSet: allowHTTP),
            allowPrivateNetworks: try read.toggle(RunSettings.allowPrivateNetworks, flagSet: allowPrivateNetworks),
            mcpEndpointBase: mcpBase,
            userAgent: agent)
        delivery.connectionsPerHost = queue.concurrency
        delivery.proxy = try read.optionalText(RunSettings.proxyURL, proxyURL).map { try EgressProxy(url: $0) }
        delivery.secretOverlap = try read.duration(RunSettings.secretOverlap, secretOverlap)
        delivery.endpointConcurrency = try read.integer(RunSettings.endpointConcurrency, endpointConcurrency)
        let ceiling: Int = try read.integer(RunSettings.endpointMaxConcurrency, endpointMaxConcurrency)
        // One endpoint may take at most half of a replica's slots: the others stay for the rest.
        delivery.endpointMaxConcurrency = max(1, min(ceiling, queue.concurrency / 2))
        delivery.failureThreshold = try read.integer(RunSettings.endpointFailureThreshold, endpointFailureThreshold)
        delivery.cooldown = try read.duration(RunSettings.endpointCooldown, endpointCooldown)
        delivery.maxCooldown = delivery.cooldown * 32
        delivery.disableAfter = try read.duration(RunSettings.endpointDisableAfter, endpointDisableAfter)
        let pool: Int = try read.integer(RunSettings.poolSize, poolSize)
        let port = try read.optionalInteger(RunSettings.httpPort, httpPort)
        let host = try read.text(RunSettings.httpHost, httpHost)
        let consoleSettings = try consoleSettings(&read, port: port, host: host)
        let traces = TraceExport.isEnabled(env)
        if traces {
            do {
                try TraceExport.validate(env)
            } catch {
                throw SettingError(description: "\(error)")
            }
        }
        queue.claimsWithOutcomes = try read.onOff(RunSettings.claimWithOutcomes, claimWithOutcomes)
        queue.claimGatherWait = try read.durationOrOff(RunSettings.claimGatherWait, claimGatherWait) ?? .zero
        queue.keyRepairInterval = try read.durationOrOff(RunSettings.keyRepairInterval, keyRepairInterval)
        let partitionLength = try read.duration(RunSettings.historyPartition, historyPartition)
        guard partitionLength <= .seconds(31 * 86_400) else {
            throw SettingError(
                description: """
                    invalid \(RunSettings.historyPartition.name) \(DurationText.format(partitionLength)): a \
                    partition spans at most 31d
                    """)
        }
        queue.history = HistoryUpkeepConfiguration(
            partitionLength: partitionLength,
            retention: try read.durationOrOff(RunSettings.historyRetention, historyRetention))
        let catchUp = try catchUpConfiguration(&read)
        let operationalSecret = try read.optionalText(RunSettings.operationalSecret, nil)
        let operational = try read.optionalText(RunSettings.operationalURL, operationalURL).map {
            OperationalWebhooks.Configuration(
                url: $0, secret: operationalSecret, userAgent: agent, requestTimeout: requestTimeoutValue,
                disableAfter: delivery.disableAfter)
        }
        var logged = read.logged
        logged["version"] = "\(BuildInfo.version)"
        logged["traces"] = "\(traces ? "otlp" : "off")"
        return Settings(
            queue: queue, delivery: delivery, poolSize: pool, httpPort: port, httpHost: host, console: consoleSettings,
            traces: traces, catchUp: catchUp, operational: operational, logged: logged)
    }

    /// The console on the operations server: it needs `--http-port`, and its tokens where the host
    /// is not loopback.
    private func consoleSettings(_ read: inout SettingsReader, port: Int?, host: String) throws -> ConsoleSettings? {
        guard try read.toggle(RunSettings.console, flagSet: console) else {
            read.note(RunSettings.console, "off")
            return nil
        }
        guard let port else {
            throw SettingError(description: "\(RunSettings.console.name) needs \(RunSettings.httpPort.name)")
        }
        let readOnly = try read.toggle(RunSettings.consoleReadOnly, flagSet: consoleReadOnly)
        read.note(RunSettings.console, readOnly ? "read-only" : "on")
        return ConsoleSettings(
            host: host, port: port, readOnly: readOnly,
            tokens: try ConsoleSettings.tokens(
                host: host, environment: read.environment, flag: RunSettings.httpHost.name),
            hosts: try ConsoleSettings.hosts(bound: host, flags: [], environment: read.environment))
    }

    /// nil with `--catch-up-interval off`; its window must exceed its interval.
    private func catchUpConfiguration(_ read: inout SettingsReader) throws -> IntegrationCatchUp.Configuration? {
        var catchUp = IntegrationCatchUp.Configuration()
        let interval = try read.durationOrOff(RunSettings.catchUpInterval, catchUpInterval)
        if let interval { catchUp.interval = interval }
        catchUp.window = try read.duration(RunSettings.catchUpWindow, catchUpWindow)
        guard catchUp.window > catchUp.interval else {
            throw SettingError(
                description:
                    """
                    invalid \(RunSettings.catchUpWindow.name) \(DurationText.format(catchUp.window)): it must exceed \
                    --\(RunSettings.catchUpInterval.flag) (\(DurationText.format(catchUp.interval))), or no account is \
                    ever swept
                    """
            )
        }
        guard interval != nil else {
            read.note(RunSettings.catchUpWindow, "off")
            return nil
        }
        return catchUp
    }
}
