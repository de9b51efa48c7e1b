import Foundation
import LibPQ
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// One replica's worker: claims jobs of the kinds it has handlers for, runs up to `concurrency`
/// at once, keeps their leases, records each outcome, and returns other replicas' expired leases.
///
/// It wakes on `NOTIFY` from the insert trigger, polls every `pollInterval` in case a
/// notification was lost, and rescans after the LISTEN connection comes back. On graceful
/// shutdown (SIGTERM/SIGINT through ServiceLifecycle, or ``shutdown()``) it stops claiming, lets
/// in-flight jobs finish within `shutdownTimeout`, releases the rest, and returns.
public final class JobWorker: Service, Sendable {
    public static let channel = "webhook_worker_jobs"

    public let configuration: JobWorkerConfiguration
    private let handlers: [String: any JobHandler]
    private let database: PostgresConnectionPool
    private let logger: Logger
    private let store: JobStore
    private let doorbell = Doorbell()
    private let state = Mutex(State())
    private let listener: PostgresListener

    private struct State {
        /// Jobs this replica holds: running, or finished with the outcome not yet written.
        var inFlight: [Int64: (job: Job, task: Task<Void, Never>?)] = [:]
        /// Jobs whose handler returned and whose outcome is being written.
        var writing: Set<Int64> = []
        /// Handlers running now; `concurrency` bounds this.
        var running = 0
        var shuttingDown = false
        var forced = false
    }

    /// - Parameters:
    ///   - handlers: one per kind; the worker claims only these kinds.
    ///   - database: the pool handlers use, and the worker for lease renewal.
    public init(
        configuration: JobWorkerConfiguration, handlers: [any JobHandler], database: PostgresConnectionPool,
        logger: Logger
    ) {
        self.configuration = configuration
        var byKind: [String: any JobHandler] = [:]
        for handler in handlers { byKind[handler.kind] = handler }
        self.handlers = byKind
        self.database = database
        var logger = logger
        logger[metadataKey: "worker.id"] = "\(configuration.workerID)"
        self.logger = logger
        self.store = JobStore(workerID: configuration.workerID)
        self.listener = PostgresListener(conninfo: configuration.conninfo, channels: [Self.channel], logger: logger)
    }

    /// The kinds this worker claims.
    public var kinds: [String] { handlers.keys.sorted() }
    /// Jobs held right now: running, or finished and waiting for their outcome to be written.
    public var inFlightCount: Int { state.withLock { $0.inFlight.count } }

    /// Slots for new jobs: a slot frees when its handler returns, so claiming goes on while
    /// outcomes are written; jobs whose outcome waits to be written are bounded too.
    private var freeSlots: Int {
        state.withLock { state in
            min(configuration.concurrency - state.running, 2 * configuration.concurrency - state.inFlight.count)
        }
    }
    /// True while the LISTEN connection is up.
    public var isListening: Bool { listener.isConnected }

    /// Begins a graceful shutdown, as SIGTERM does.
    public func shutdown() {
        state.withLock { $0.shuttingDown = true }
        doorbell.ring()
    }

    private var isShuttingDown: Bool { state.withLock { $0.shuttingDown } }
    /// True once a graceful shutdown has begun.
    public var isStopping: Bool { isShuttingDown }

    public func run() async throws {
        logger.info(
            "worker started",
            metadata: [
                "worker.kinds": "\(kinds.joined(separator: ","))", "worker.concurrency": "\(configuration.concurrency)",
            ])
        let claimConnections = PostgresConnectionPool(
            configuration: .init(
                conninfo: configuration.conninfo, maxConnections: 1, sessionSetup: JobStore.claimSessionSetup),
            logger: logger)
        let finishConnections = PostgresConnectionPool(
            configuration: .init(conninfo: configuration.conninfo, maxConnections: configuration.outcomeWriters), logger: logger)
        let finisher = Finisher(
            store: store, database: finishConnections, maxBatch: configuration.finishBatchSize,
            writers: configuration.outcomeWriters, logger: logger)

        listener.start()
        let finishing = Task { await finisher.run() }
        let listening = Task { await self.consumeNotifications() }
        let maintaining = Task { await self.maintainLeases() }

        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await self.claimLoop(claimConnections, finisher: finisher)
            } onGracefulShutdown: {
                self.shutdown()
            }
        } onCancel: {
            self.shutdown()
        }

        maintaining.cancel()
        finisher.stop()
        await finishing.value
        await listener.stop()
        listening.cancel()
        await claimConnections.close()
        await finishConnections.close()
        logger.info("worker stopped")
    }

    // MARK: - Claiming

    private func claimLoop(_ connections: PostgresConnectionPool, finisher: Finisher) async {
        var backoff: Duration = .milliseconds(100)
        var failing = false
        let kinds = self.kinds
        while !isShuttingDown {
            let free = freeSlots
            var claimedAll = false
            if free > 0 {
                let limit = min(free, configuration.claimBatchSize)
                do {
                    let jobs = try await connections.withConnection { connection in
                        try await store.claim(
                            connection, kinds: kinds, limit: limit, lease: configuration.lease,
                            maxAttempts: { self.policy(for: $0).maxAttempts })
                    }
                    if failing { logger.info("claiming jobs again") }
                    failing = false
                    backoff = .milliseconds(100)
                    for job in jobs { start(job, finisher: finisher) }
                    claimedAll = jobs.count == limit
                } catch {
                    if !failing {
                        logger.warning("could not claim jobs, retrying", metadata: ["error": "\(error)"])
                    }
                    failing = true
                    await doorbell.wait(timeout: backoff)
                    backoff = min(backoff * 2, .seconds(5))
                    continue
                }
            }
            // A full batch means more may be waiting: claim again at once while slots are free.
            if claimedAll && freeSlots > 0 { continue }
            await doorbell.wait(timeout: configuration.pollInterval)
        }
        await drain(finisher)
    }

    private func start(_ job: Job, finisher: Finisher) {
        Counter(label: "webhook_worker_jobs_claimed_total", dimensions: [("kind", job.kind)]).increment()
        state.withLock {
            $0.inFlight[job.id] = (job, nil)
            $0.running += 1
        }
        let task = Task { await self.process(job, finisher: finisher) }
        state.withLock { state in
            if state.inFlight[job.id] != nil { state.inFlight[job.id]?.task = task }
        }
        Gauge(label: "webhook_worker_jobs_in_flight").record(inFlightCount)
    }

    // MARK: - Running one job

    private func policy(for kind: String) -> RetryPolicy {
        handlers[kind]?.retryPolicy ?? configuration.retryPolicy
    }

    private func process(_ job: Job, finisher: Finisher) async {
        var logger = self.logger
        logger[metadataKey: "job.id"] = "\(job.id)"
        logger[metadataKey: "job.kind"] = "\(job.kind)"
        logger[metadataKey: "job.attempt"] = "\(job.attempt)"
        let started = ContinuousClock.now
        let resolution: Resolution
        var statements: [BoundStatement] = []
        if let handler = handlers[job.kind] {
            let context = JobContext(logger: logger, database: database, workerID: configuration.workerID)
            do {
                let outcome = try await handler.handle(job, context: context)
                statements = outcome.statements
                resolution = resolve(outcome.decision, job: job)
            } catch {
                if state.withLock({ $0.forced }) {
                    resolution = .release(reason: "released at shutdown; this attempt does not count")
                } else if let error = error as? PostgresError, error.isTransient {
                    // The database failed, not the job (a terminated backend, a restart): try again
                    // at once without spending one of the job's attempts.
                    logger.info("job released after a database error", metadata: ["error": "\(error)"])
                    resolution = .release(reason: "released after a database error; this attempt does not count: \(error)")
                } else {
                    logger.warning("job handler threw", metadata: ["error": "\(error)"])
                    resolution = resolve(.retry(error: "\(type(of: error)): \(error)", after: nil), job: job)
                }
            }
        } else {
            resolution = resolve(.retry(error: "no handler for kind \(job.kind)", after: nil), job: job)
        }

        state.withLock {
            $0.running -= 1
            $0.writing.insert(job.id)
        }
        doorbell.ring()
        let held = await finisher.submit(
            .init(job: job, resolution: resolution, statements: statements, finishedAt: Date()))
        let seconds = DurationText.seconds(ContinuousClock.now - started)
        if held {
            Counter(label: "webhook_worker_jobs_total", dimensions: [("kind", job.kind), ("outcome", resolution.outcomeLabel)])
                .increment()
            Timer(label: "webhook_worker_job_duration_seconds", dimensions: [("kind", job.kind)])
                .recordSeconds(seconds)
            switch resolution {
            case .deadLetter(let reason, let error):
                logger.warning(
                    "job moved to the dead letters", metadata: ["job.reason": "\(reason.rawValue)", "error": "\(error)"])
            case .retry(let error, let runAt):
                logger.info(
                    "job will be retried",
                    metadata: ["error": "\(error)", "job.retry_at": "\(runAt.formatted(.iso8601))"])
            default:
                logger.debug("job finished", metadata: ["job.outcome": "\(resolution.outcomeLabel)"])
            }
        } else {
            logger.warning("job's lease was lost before its outcome was recorded; the outcome was dropped")
        }
        state.withLock {
            _ = $0.inFlight.removeValue(forKey: job.id)
            $0.writing.remove(job.id)
        }
        Gauge(label: "webhook_worker_jobs_in_flight").record(inFlightCount)
        doorbell.ring()
    }

    private func resolve(_ decision: JobOutcome.Decision, job: Job) -> Resolution {
        let policy = self.policy(for: job.kind)
        switch decision {
        case .complete:
            return .complete
        case .cancel(let reason):
            return .cancel(reason: reason)
        case .fail(let reason):
            return .deadLetter(reason: .permanentFailure, error: reason)
        case .retry(let error, let after):
            if job.isLastAttempt {
                return .deadLetter(
                    reason: .attemptsExhausted, error: "attempt \(job.attempt) of \(job.maxAttempts): \(error)")
            }
            let wait = after.map(policy.clamp) ?? policy.delay(afterAttempt: job.attempt)
            return .retry(error: error, runAt: Date().addingTimeInterval(DurationText.seconds(wait)))
        }
    }

    // MARK: - Shutdown

    private func drain(_ finisher: Finisher) async {
        let clock = ContinuousClock()
        let deadline = clock.now + configuration.shutdownTimeout
        if inFlightCount > 0 {
            logger.info("waiting for in-flight jobs", metadata: ["jobs": "\(inFlightCount)"])
        }
        while inFlightCount > 0 && clock.now < deadline {
            await doorbell.wait(timeout: min(deadline - clock.now, .milliseconds(100)))
        }
        let unfinished = state.withLock { state in
            state.forced = true
            return state.inFlight.values.compactMap(\.task)
        }
        guard !unfinished.isEmpty else { return }
        logger.warning("shutdown timeout reached; releasing unfinished jobs", metadata: ["jobs": "\(unfinished.count)"])
        for task in unfinished { task.cancel() }
        // Handlers that honour cancellation release their jobs now; give stragglers a moment,
        // then release their jobs for them (a late outcome then matches nothing).
        let grace = clock.now + .seconds(5)
        while inFlightCount > 0 && clock.now < grace {
            await doorbell.wait(timeout: .milliseconds(100))
        }
        let stuck = state.withLock { Array($0.inFlight.values.map(\.job)) }
        for job in stuck {
            _ = await finisher.submit(
                .init(
                    job: job, resolution: .release(reason: "released at shutdown; this attempt does not count"),
                    statements: [], finishedAt: Date()))
        }
    }

    // MARK: - Notifications and leases

    private func consumeNotifications() async {
        let kinds = Set(self.kinds)
        for await event in listener.events {
            switch event {
            case .notification(_, let payload):
                // The payload names the kind inserted; empty means "something changed".
                if payload.isEmpty || kinds.contains(payload) { doorbell.ring() }
            case .connected(let reconnected):
                Gauge(label: "webhook_worker_listen_connected").record(1)
                if reconnected {
                    logger.info("LISTEN connection restored; rescanning")
                    doorbell.ring()
                }
            case .disconnected:
                Gauge(label: "webhook_worker_listen_connected").record(0)
            }
        }
    }

    private func maintainLeases() async {
        let clock = ContinuousClock()
        let renewEvery = configuration.lease / 3
        var nextRenewal = clock.now + renewEvery
        var nextReap = clock.now
        while !Task.isCancelled {
            if clock.now >= nextReap {
                nextReap = clock.now + configuration.reapInterval
                do {
                    let reaped = try await database.withConnection { connection in
                        try await store.reapExpiredLeases(
                            connection, defaultMaxAttempts: configuration.retryPolicy.maxAttempts)
                    }
                    if !reaped.isEmpty {
                        for (kind, count) in reaped {
                            Counter(label: "webhook_worker_jobs_lost_total", dimensions: [("kind", kind)]).increment(by: count)
                        }
                        logger.warning(
                            "returned jobs with expired leases to the queue", metadata: ["jobs": "\(reaped.values.reduce(0, +))"])
                        doorbell.ring()
                    }
                } catch {
                    logger.debug("could not reap expired leases", metadata: ["error": "\(error)"])
                }
            }
            if clock.now >= nextRenewal {
                nextRenewal = clock.now + renewEvery
                let ids = state.withLock { Array($0.inFlight.keys) }
                if configuration.renewsLeases && !ids.isEmpty {
                    do {
                        let lost = try await database.withConnection { connection in
                            try await store.extendLeases(connection, ids: ids, lease: configuration.lease)
                        }
                        // A job whose outcome is being written may already be back in the queue:
                        // it is not lost.
                        let reallyLost = state.withLock { state in lost.filter { state.inFlight[$0] != nil && !state.writing.contains($0) } }
                        if !reallyLost.isEmpty {
                            logger.warning(
                                "leases lost for jobs still running here; their outcomes will be dropped",
                                metadata: ["job.ids": "\(reallyLost)"])
                        }
                    } catch {
                        logger.warning("could not renew leases", metadata: ["error": "\(error)"])
                    }
                }
            }
            let next = min(nextRenewal, nextReap)
            try? await Task.sleep(until: next, clock: clock)
        }
    }
}
