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
/// in-flight jobs finish within `shutdownTimeout`, cancels the handlers still running (their jobs
/// are released, the attempt not counted), and returns.
///
/// Everything it starts is owned by one task group inside ``run()``: the claim loop (the group's
/// body), the notification consumer, the poll ticker, lease upkeep, and one child per job. Lease
/// upkeep and claiming have connections of their own, so neither ever waits behind handlers that
/// hold the shared pool (a table lock in the web app, a slow statement).
public final class JobWorker: Service, Sendable {
    public let configuration: JobWorkerConfiguration
    let handlers: [String: any JobHandler]
    private let database: PostgresConnectionPool
    let logger: Logger
    let store: JobStore
    let metrics: MetricNames
    /// Wakes the claim loop: notifications, the poll ticker, freed slots, shutdown.
    let wakeUps = WakeUps<Void>()
    let state = Mutex(State())
    private let listening = Atomic<Bool>(false)
    /// Attempt spans waiting for their outcome to be written (empty while tracing is off).
    private let spans = AttemptSpans()

    /// One attempt of one job: a job re-claimed after its lease ran out is a new attempt, and the
    /// old attempt's task must not touch the new one's bookkeeping.
    struct AttemptKey: Hashable, Sendable {
        let id: Int64
        let attempt: Int
    }

    enum StopReason: Sendable {
        case leaseLost, shutdown
    }

    struct Running {
        let job: Job
        /// Asks the job's task to cancel its handler.
        let stop: AsyncStream<StopReason>.Continuation
    }

    struct State {
        /// Handlers running now; `concurrency` bounds these.
        var running: [AttemptKey: Running] = [:]
        /// Attempts whose handler returned and whose outcome is being written.
        var writing: [AttemptKey: Job] = [:]
        /// Why a handler was cancelled.
        var stopped: [AttemptKey: StopReason] = [:]
        var shuttingDown = false
        /// Set once claiming has ended: the last handler to return stops the finisher.
        var finisherDeadline: ContinuousClock.Instant?
        var finisherStopped = false

        var inFlight: Int { running.count + writing.count }
    }

    /// - Parameters:
    ///   - handlers: one per kind; the worker claims only these kinds.
    ///   - database: the pool handlers use.
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
        self.store = JobStore(workerID: configuration.workerID, schema: configuration.schema)
        self.metrics = MetricNames(prefix: configuration.schema.metricPrefix)
    }

    /// The kinds this worker claims.
    public var kinds: [String] { handlers.keys.sorted() }
    /// Jobs held right now: running, or finished and waiting for their outcome to be written.
    public var inFlightCount: Int { state.withLock { $0.inFlight } }

    /// Slots for new jobs: a slot frees when its handler returns, so claiming goes on while
    /// outcomes are written; jobs whose outcome waits to be written are bounded too.
    private var freeSlots: Int {
        state.withLock { state in
            min(configuration.concurrency - state.running.count, 2 * configuration.concurrency - state.inFlight)
        }
    }
    /// True while the LISTEN connection is up.
    public var isListening: Bool { listening.load(ordering: .relaxed) }

    /// Begins a graceful shutdown, as SIGTERM does.
    public func shutdown() {
        state.withLock { $0.shuttingDown = true }
        wakeUps.ring()
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
        func pool(_ connections: Int) -> PostgresConnectionPool.Configuration {
            configuration.databasePool(maxConnections: connections)
        }
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await PostgresConnectionPool.withPool(
                configuration: pool(1), logger: logger
            ) { claiming in
                try await PostgresConnectionPool.withPool(
                    configuration: pool(1), logger: logger
                ) { upkeep in
                    try await PostgresConnectionPool.withPool(
                        configuration: pool(configuration.outcomeWriters),
                        logger: logger
                    ) { outcomes in
                        await self.work(claiming: claiming, upkeep: upkeep, outcomes: outcomes)
                    }
                }
            }
        } onCancelOrGracefulShutdown: {
            self.shutdown()
        }
        logger.info("worker stopped")
    }

    private func work(
        claiming: PostgresConnectionPool, upkeep: PostgresConnectionPool, outcomes: PostgresConnectionPool
    ) async {
        let finisher = Finisher(
            store: store, database: outcomes, maxBatch: configuration.finishBatchSize,
            writers: configuration.outcomeWriters, logger: logger
        ) { [self] results in recorded(results) }
        // Outcome writes must survive the worker's cancellation (a forced stop still records what
        // handlers finished), so the finisher runs in a task that cancellation does not reach. It
        // is awaited below and ends at its own deadline, set when claiming stops.
        let finishing = Task { await finisher.run() }
        await PostgresListener.withListener(
            conninfo: configuration.listenConninfo ?? configuration.conninfo, channels: [configuration.schema.channel],
            applicationName: configuration.applicationName + "-listen", logger: logger
        ) {
            listener in
            await withDiscardingTaskGroup { group in
                group.addTask { await self.consumeNotifications(listener) }
                group.addTask { await self.tick() }
                group.addTask { await self.maintainLeases(upkeep) }
                var wakeUps = self.wakeUps.stream.makeAsyncIterator()
                await self.claimLoop(claiming, finisher: finisher, wakeUps: &wakeUps, group: &group)
                await self.drain(finisher, wakeUps: &wakeUps)
                await finishing.value
                // The jobs are done and their outcomes written or given up: end the helpers.
                group.cancelAll()
            }
        }
        listening.store(false, ordering: .relaxed)
    }

    // MARK: - Claiming

    private func claimLoop(
        _ connections: PostgresConnectionPool, finisher: Finisher, wakeUps: inout AsyncStream<Void>.Iterator,
        group: inout DiscardingTaskGroup
    ) async {
        var failing = false
        let kinds = self.kinds
        let keyLimits = handlers.compactMapValues(\.concurrencyLimit)
        while !isShuttingDown && !Task.isCancelled {
            let free = freeSlots
            var claimedAll = false
            if free > 0 {
                let limit = min(free, configuration.claimBatchSize)
                do {
                    let claimed = try await connections.withConnection { connection in
                        var claimed = try await store.claim(
                            connection, kinds: kinds, keyLimits: keyLimits, limit: limit, lease: configuration.lease,
                            maxAttempts: { self.policy(for: $0).maxAttempts })
                        if configuration.tracing.isOn {
                            claimed.jobs = await configuration.tracing.withTraceContexts(
                                claimed.jobs, schema: configuration.schema, connection: connection, logger: logger)
                        }
                        return claimed
                    }
                    if failing { logger.info("claiming jobs again") }
                    failing = false
                    for job in claimed.jobs { start(job, finisher: finisher, group: &group) }
                    for (job, reason) in claimed.unreadable {
                        deadLetterUnreadable(job, reason: reason, finisher: finisher)
                    }
                    claimedAll = claimed.count == limit
                } catch {
                    if !failing {
                        logger.warning("could not claim jobs, retrying", metadata: ["error": "\(error)"])
                    }
                    failing = true
                    // The ticker wakes this loop every poll interval: that is the retry's pace.
                }
            }
            // A full batch means more may be waiting: claim again at once while slots are free.
            if claimedAll && freeSlots > 0 { continue }
            if await wakeUps.next() == nil { break }
        }
    }

    private func start(_ job: Job, finisher: Finisher, group: inout DiscardingTaskGroup) {
        Counter(label: metrics.jobsClaimed, dimensions: [("kind", job.kind)]).increment()
        let key = AttemptKey(id: job.id, attempt: job.attempt)
        let (stops, stop) = AsyncStream.makeStream(of: StopReason.self, bufferingPolicy: .bufferingNewest(1))
        let count = state.withLock { state in
            state.running[key] = Running(job: job, stop: stop)
            return state.inFlight
        }
        Gauge(label: metrics.jobsInFlight).record(count)
        group.addTask { await self.process(job, key: key, stops: stops, stop: stop, finisher: finisher) }
    }

    /// A claimed row that is not a readable job goes to the dead letters with the reason, at once.
    private func deadLetterUnreadable(_ job: Job, reason: String, finisher: Finisher) {
        logger.error(
            "a claimed job row could not be read; moving it to the dead letters",
            metadata: ["job.id": "\(job.id)", "job.kind": "\(job.kind)", "error": "\(reason)"])
        state.withLock { $0.writing[AttemptKey(id: job.id, attempt: job.attempt)] = job }
        finisher.submit(
            .init(
                job: job, resolution: .deadLetter(reason: .permanentFailure, error: reason), statements: [],
                ended: .now))
    }

    // MARK: - Running one job

    private func policy(for kind: String) -> any RetryStrategy {
        handlers[kind]?.retryStrategy ?? configuration.retryStrategy
    }

    private enum HandlerResult: Sendable {
        case decided(JobOutcome)
        case threw(any Error)
    }

    private func process(
        _ job: Job, key: AttemptKey, stops: AsyncStream<StopReason>, stop: AsyncStream<StopReason>.Continuation,
        finisher: Finisher
    ) async {
        var logger = self.logger
        logger[metadataKey: "job.id"] = "\(job.id)"
        logger[metadataKey: "job.kind"] = "\(job.kind)"
        logger[metadataKey: "job.attempt"] = "\(job.attempt)"
        let clock = ContinuousClock()
        let started = clock.now
        let tracing = configuration.tracing
        let attemptSpan = tracing.startAttempt(job, logger: logger)
        // The handler runs in a child task so that it can be cancelled alone: when its lease is
        // lost, or when the shutdown timeout ends.
        let result = await withTaskGroup(of: HandlerResult.self) { group in
            group.addTask { [logger] in
                defer { stop.finish() }
                guard let handler = self.handlers[job.kind] else {
                    return .decided(.retry("no handler for kind \(job.kind)"))
                }
                let context = JobContext(
                    logger: logger, database: self.database, workerID: self.configuration.workerID, tracing: tracing)
                // The attempt's span is the handler's current span: its statements and requests
                // are children of it.
                return await tracing.within(attemptSpan) {
                    do {
                        return .decided(try await handler.handle(job, context: context))
                    } catch {
                        return .threw(error)
                    }
                }
            }
            // Ends when the handler's task finishes the stream, or when this task is cancelled.
            for await _ in stops { group.cancelAll() }
            return await group.next()!
        }
        let elapsed = clock.now - started
        Timer(label: metrics.jobDuration, dimensions: [("kind", job.kind)])
            .recordNanoseconds(
                elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        let stopReason = state.withLock { $0.stopped[key] }
        let resolution: Resolution
        var statements: [BoundStatement] = []
        switch result {
        case .decided(let outcome):
            // Even when cancelled: an outcome the handler knows (a webhook that was answered 2xx)
            // is recorded, not thrown away.
            statements = outcome.statements
            resolution = resolve(outcome.decision, job: job)
        case .threw(let error):
            resolution = resolveFailure(error, job: job, stopped: stopReason, logger: logger)
        }
        let stopFinisher = state.withLock { state -> ContinuousClock.Instant? in
            state.running[key] = nil
            state.writing[key] = job
            guard state.running.isEmpty, let deadline = state.finisherDeadline, !state.finisherStopped else {
                return nil
            }
            state.finisherStopped = true
            return deadline
        }
        if let attemptSpan { spans.recording(key, attempt: attemptSpan, tracing: tracing) }
        wakeUps.ring()
        finisher.submit(
            .init(
                job: job, resolution: resolution, statements: statements, ended: clock.now,
                retryWait: policy(for: job.kind).delay(afterAttempt: job.attempt)))
        if let stopFinisher { finisher.stop(deadline: stopFinisher) }
    }

    private func resolve(_ decision: JobOutcome.Decision, job: Job) -> Resolution {
        let policy = self.policy(for: job.kind)
        switch decision {
        case .complete:
            return .complete
        case .cancel(let reason):
            return .cancel(reason: reason)
        case .fail(let reason, let code):
            return .deadLetter(reason: code, error: reason)
        case .snooze(let after, let reason):
            return .snooze(reason: reason, wait: max(after, .zero))
        case .retry(let error, let after):
            if job.isLastAttempt {
                return .deadLetter(
                    reason: .attemptsExhausted, error: "attempt \(job.attempt) of \(job.maxAttempts): \(error)")
            }
            return .retry(error: error, wait: after.map(policy.clamp) ?? policy.delay(afterAttempt: job.attempt))
        }
    }

    /// A handler that threw: released when it was cancelled or the database failed (a few times),
    /// else a failed attempt.
    private func resolveFailure(_ error: any Error, job: Job, stopped: StopReason?, logger: Logger) -> Resolution {
        if stopped != nil || Task.isCancelled {
            return .release(reason: "released at shutdown; this attempt does not count", wait: nil)
        }
        if let error = error as? PostgresError, error.isTransient {
            // The database failed, not the job (a terminated backend, a restart, a lock held
            // elsewhere past lock_timeout): try again later without spending one of the job's
            // attempts, waiting longer each time. A job that keeps breaking its connection spends
            // attempts past the cap, so it still ends in the dead letters.
            if job.released < configuration.maxUncountedReleases {
                let wait = configuration.releaseBackoff.delay(afterAttempt: job.released + 1)
                logger.info(
                    "job released after a database error",
                    metadata: ["error": "\(error)", "job.retry_in": "\(wait.compactDescription)"])
                return .release(
                    reason: "released after a database error; this attempt does not count: \(error)", wait: wait)
            }
            logger.warning(
                "database errors keep failing this job; counting the attempt",
                metadata: ["error": "\(error)", "job.released": "\(job.released)"])
        } else {
            logger.warning("job handler threw", metadata: ["error": "\(error)"])
        }
        return resolve(.retry(error: "\(type(of: error)): \(error)", after: nil), job: job)
    }

    /// Called by the finisher once outcomes are written (or given up).
    private func recorded(_ results: [(Finisher.Entry, Finisher.Result)]) {
        for (entry, result) in results {
            let job = entry.job
            if configuration.tracing.isOn {
                spans.recorded(
                    AttemptKey(id: job.id, attempt: job.attempt), outcome: result.spanOutcome(entry.resolution),
                    error: result.spanError(entry.resolution))
            }
            var metadata: Logger.Metadata {
                ["job.id": "\(job.id)", "job.kind": "\(job.kind)", "job.attempt": "\(job.attempt)"]
            }
            switch result {
            case .applied:
                Counter(
                    label: metrics.jobs,
                    dimensions: [("kind", job.kind), ("outcome", entry.resolution.outcomeLabel)]
                ).increment()
                switch entry.resolution {
                case .deadLetter(let reason, let error):
                    logger.warning(
                        "job moved to the dead letters",
                        metadata: metadata.merging(["job.reason": "\(reason.rawValue)", "error": "\(error)"]) { $1 })
                case .retry(let error, let wait):
                    logger.info(
                        "job will be retried",
                        metadata: metadata.merging(["error": "\(error)", "job.retry_in": "\(wait.compactDescription)"])
                        { $1 })
                default:
                    logger.debug(
                        "job finished",
                        metadata: metadata.merging(["job.outcome": "\(entry.resolution.outcomeLabel)"]) { $1 })
                }
            case .notHeld:
                logger.warning(
                    "job's lease was lost before its outcome was recorded; the outcome was dropped", metadata: metadata)
            case .abandoned:
                logger.warning(
                    "job's outcome could not be recorded before shutdown; its lease will return it to the queue",
                    metadata: metadata)
            }
        }
        let count = state.withLock { state in
            for (entry, _) in results {
                let key = AttemptKey(id: entry.job.id, attempt: entry.job.attempt)
                state.writing[key] = nil
                state.stopped[key] = nil
            }
            return state.inFlight
        }
        Gauge(label: metrics.jobsInFlight).record(count)
        wakeUps.ring()
    }

    // MARK: - Shutdown

    /// Waits for in-flight jobs until the shutdown timeout, then cancels the handlers still
    /// running, and sets the finisher's deadline: the timeout plus a grace for the released jobs'
    /// outcomes (the finisher stops as soon as the last one is written).
    private func drain(_ finisher: Finisher, wakeUps: inout AsyncStream<Void>.Iterator) async {
        let clock = ContinuousClock()
        let deadline = clock.now + configuration.shutdownTimeout
        if inFlightCount > 0 {
            logger.info("waiting for in-flight jobs", metadata: ["jobs": "\(inFlightCount)"])
        }
        // The ticker rings every 100 ms while stopping; a finished job rings at once.
        while inFlightCount > 0 && clock.now < deadline {
            if await wakeUps.next() == nil { break }
        }
        // Outcomes still unwritten at the shutdown timeout (a database that is down) are given up
        // then; only the releases of handlers cancelled now get the grace.
        let (toStop, finisherDeadline) = state.withLock { state in
            for key in state.running.keys { state.stopped[key] = .shutdown }
            let finisherDeadline =
                state.running.isEmpty ? deadline : max(deadline, clock.now) + configuration.shutdownGrace
            state.finisherDeadline = finisherDeadline
            state.finisherStopped = state.running.isEmpty
            return (Array(state.running.values), finisherDeadline)
        }
        if !toStop.isEmpty {
            logger.warning(
                "shutdown timeout reached; cancelling unfinished jobs", metadata: ["jobs": "\(toStop.count)"])
            for running in toStop { running.stop.yield(.shutdown) }
        } else {
            finisher.stop(deadline: finisherDeadline)
        }
    }

    // MARK: - Notifications, polling and leases

    private func consumeNotifications(_ listener: PostgresListener) async {
        let kinds = Set(self.kinds)
        for await event in listener.events {
            switch event {
            case .notification(_, let payload):
                // The payload names the kind inserted; empty means "something changed".
                if payload.isEmpty || kinds.contains(payload) { wakeUps.ring() }
            case .connected(let reconnected):
                listening.store(true, ordering: .relaxed)
                Gauge(label: metrics.listenConnected).record(1)
                if reconnected {
                    logger.info("LISTEN connection restored; rescanning")
                    wakeUps.ring()
                }
            case .disconnected:
                listening.store(false, ordering: .relaxed)
                Gauge(label: metrics.listenConnected).record(0)
            }
        }
    }

    /// The fallback rescan every poll interval, and a 100 ms pace while shutting down.
    private func tick() async {
        let clock = ContinuousClock()
        var next = clock.now + configuration.pollInterval
        let step = min(configuration.pollInterval, .milliseconds(100))
        while !Task.isCancelled {
            try? await Task.sleep(for: step)
            if clock.now >= next || isShuttingDown {
                next = clock.now + configuration.pollInterval
                wakeUps.ring()
            }
        }
    }
}

/// The names of the worker's metrics, under the schema's ``JobQueueSchema/metricPrefix``.
struct MetricNames: Sendable {
    let jobsClaimed: String
    let jobsInFlight: String
    let jobDuration: String
    let jobs: String
    let listenConnected: String
    let jobsLost: String
    let keysRepaired: String

    init(prefix: String) {
        jobsClaimed = prefix + "_jobs_claimed_total"
        jobsInFlight = prefix + "_jobs_in_flight"
        jobDuration = prefix + "_job_duration_seconds"
        jobs = prefix + "_jobs_total"
        listenConnected = prefix + "_listen_connected"
        jobsLost = prefix + "_jobs_lost_total"
        keysRepaired = prefix + "_keys_repaired_total"
    }
}
