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
/// Its bookkeeping is one value, ``StateMachine`` (JobWorker+StateMachine.swift), held in one
/// `Mutex`: the worker reports events to it (a wake-up, a claim's return, a handler's return, a
/// lost lease, a shutdown) and carries out the actions it answers (claim so many jobs, wait,
/// cancel these handlers, stop the finisher). Around each handler run the middleware
/// (Middleware/: metrics, then tracing); beside the claim loop run the maintenance services
/// (Maintenance/: lease renewer, reaper, key repairer), which report to ``testSignals``.
///
/// Everything it starts is owned by one task group inside ``run()``: the claim loop (the group's
/// body), the notification consumer, the poll ticker, the maintenance services, and one child per
/// job. Maintenance and claiming have connections of their own, so neither ever waits behind
/// handlers that hold the shared pool (a table lock in the web app, a slow statement).
public final class JobWorker: Service, Sendable {
    public let configuration: JobWorkerConfiguration
    let handlers: [String: any JobHandler]
    /// Per kind, the most jobs of one concurrency key running at once (kinds without a limit left out).
    let keyLimits: [String: Int]
    let database: PQConnectionPool
    let logger: Logger
    let store: JobStore
    let metrics: MetricNames
    /// Wakes the claim loop: notifications, the poll ticker, freed slots, shutdown.
    let wakeUps = WakeUps<Void>()
    let state: Mutex<State>
    /// Jobs the outcome writers claimed, for the claim loop to start (JobWorker+OutcomeClaims.swift).
    /// Taken before `state` when both are.
    let handOffs = Mutex(HandOffs())
    /// Metrics, then tracing (while it is on), around each handler run.
    let middleware: [any JobMiddleware]
    let listening = Atomic<Bool>(false)
    /// What the maintenance services and the finisher report, for tests to wait on (off unless a
    /// test enables it).
    package let testSignals = WorkerTestSignals()

    /// One attempt of one job: a job re-claimed after its lease ran out is a new attempt, and the
    /// old attempt's task must not touch the new one's bookkeeping.
    struct AttemptKey: Hashable, Sendable {
        let id: Int64
        let attempt: Int
    }

    enum StopReason: Sendable {
        case leaseLost, shutdown
    }

    typealias State = StateMachine<AsyncStream<StopReason>.Continuation>

    /// - Parameters:
    ///   - handlers: one per kind; the worker claims only these kinds.
    ///   - database: the pool handlers use.
    public init(
        configuration: JobWorkerConfiguration, handlers: [any JobHandler], database: PQConnectionPool,
        logger: Logger
    ) {
        self.configuration = configuration
        var byKind: [String: any JobHandler] = [:]
        for handler in handlers { byKind[handler.kind] = handler }
        self.handlers = byKind
        self.keyLimits = byKind.compactMapValues(\.concurrencyLimit)
        self.database = database
        var logger = logger
        logger[metadataKey: "worker.id"] = "\(configuration.workerID)"
        self.logger = logger
        self.store = JobStore(workerID: configuration.workerID, schema: configuration.schema)
        let metrics = MetricNames(prefix: configuration.schema.metricPrefix)
        self.metrics = metrics
        self.state = Mutex(
            State(
                limits: .init(
                    concurrency: configuration.concurrency, claimBatchSize: configuration.claimBatchSize,
                    shutdownTimeout: configuration.shutdownTimeout, shutdownGrace: configuration.shutdownGrace,
                    gatherWait: configuration.claimGatherWait)))
        var middleware: [any JobMiddleware] = [MetricsMiddleware(metrics: metrics)]
        if configuration.tracing.isOn { middleware.append(TracingMiddleware(tracing: configuration.tracing)) }
        self.middleware = middleware
    }

    /// The kinds this worker claims.
    public var kinds: [String] { handlers.keys.sorted() }
    /// Jobs held right now: running, or finished and waiting for their outcome to be written.
    public var inFlightCount: Int { state.withLock { $0.inFlight } }
    /// True while the LISTEN connection is up.
    public var isListening: Bool { listening.load(ordering: .relaxed) }

    /// Begins a graceful shutdown, as SIGTERM does.
    public func shutdown() {
        state.withLock { $0.shutdownRequested() }
        wakeUps.ring()
    }

    /// True once a graceful shutdown has begun.
    public var isStopping: Bool { state.withLock { $0.isStopping } }

    public func run() async throws {
        logger.info(
            "worker started",
            metadata: [
                "worker.kinds": "\(kinds.joined(separator: ","))", "worker.concurrency": "\(configuration.concurrency)",
            ])
        func pool(_ connections: Int) -> PQConnectionPool.Configuration {
            configuration.databasePool(maxConnections: connections)
        }
        await withTaskCancellationOrGracefulShutdownHandler {
            await PQConnectionPool.withPool(
                configuration: pool(1), logger: logger
            ) { claiming in
                await PQConnectionPool.withPool(
                    configuration: pool(1), logger: logger
                ) { upkeep in
                    // Opened lazily: a worker that keeps no history never connects it.
                    await PQConnectionPool.withPool(
                        configuration: pool(1), logger: logger
                    ) { history in
                        await PQConnectionPool.withPool(
                            configuration: pool(configuration.outcomeWriters),
                            logger: logger
                        ) { outcomes in
                            await self.work(
                                claiming: claiming, upkeep: upkeep, history: history, outcomes: outcomes)
                        }
                    }
                }
            }
        } onCancelOrGracefulShutdown: {
            self.shutdown()
        }
        logger.info("worker stopped")
    }

    private func work(
        claiming: PQConnectionPool, upkeep: PQConnectionPool, history: PQConnectionPool,
        outcomes: PQConnectionPool
    ) async {
        let finisher = Finisher(
            store: store, database: outcomes, maxBatch: configuration.finishBatchSize,
            writers: configuration.outcomeWriters, logger: logger,
            claimer: configuration.claimsWithOutcomes ? self : nil
        ) { [self] results in recorded(results) }
        // Outcome writes must survive the worker's cancellation (a forced stop still records what
        // handlers finished), so the finisher runs in a task that cancellation does not reach. It
        // is awaited below and ends at its own deadline, set when the drain ends.
        let finishing = Task { await finisher.run() }
        let maintenance = self.maintenance
        let historyUpkeep = self.historyUpkeep
        await PQListener.withListener(
            conninfo: configuration.listenConninfo ?? configuration.conninfo, channels: [configuration.schema.channel],
            applicationName: configuration.applicationName + "-listen", logger: logger
        ) {
            listener in
            await withDiscardingTaskGroup { group in
                group.addTask { await self.consumeNotifications(listener) }
                group.addTask { await self.tick() }
                group.addTask { await maintenance.run(upkeep) }
                if let historyUpkeep { group.addTask { await historyUpkeep.schedule(history) } }
                await self.claimLoop(claiming, finisher: finisher, group: &group)
                await finishing.value
                // The jobs are done and their outcomes written or given up: end the helpers.
                group.cancelAll()
            }
        }
        listening.store(false, ordering: .relaxed)
    }

    // MARK: - Claiming and draining

    /// Claims while there are free slots and no shutdown, then drains: carries out the state
    /// machine's actions until it answers ``StateMachine/Action/finishDrain(cancel:stopFinisher:)``.
    private func claimLoop(
        _ connections: PQConnectionPool, finisher: Finisher, group: inout DiscardingTaskGroup
    ) async {
        let clock = ContinuousClock()
        var wakeUps = self.wakeUps.stream.makeAsyncIterator()
        var failing = false
        var action = awake(clock)
        while true {
            startHandedOff(finisher: finisher, group: &group)
            switch action {
            case .claim(let limit):
                do {
                    let claimed = try await claim(connections, limit: limit)
                    if failing { logger.info("claiming jobs again") }
                    failing = false
                    action = started(claimed, finisher: finisher, group: &group, clock: clock)
                } catch {
                    if !failing {
                        logger.warning("could not claim jobs, retrying", metadata: ["error": "\(error)"])
                    }
                    failing = true
                    // The ticker wakes this loop every poll interval: that is the retry's pace.
                    action = state.withLock { $0.claimFailed(now: clock.now) }
                }
            case .waitForWakeUp, .gather:
                // A gathering wait's end rings like any wake-up; a ring left over from a timer
                // cancelled too late only makes the machine look again.
                var timer: Task<Void, any Error>?
                if case .gather(let until) = action {
                    timer = Task { [wakeUps = self.wakeUps] in
                        try await Task.sleep(until: until, clock: clock)
                        wakeUps.ring()
                    }
                }
                let woke: Void? = await wakeUps.next()
                timer?.cancel()
                if woke == nil {
                    action = state.withLock { $0.wakeUpsEnded(now: clock.now) }
                } else {
                    action = awake(clock)
                }
            case .startDrain(let inFlight):
                logger.info("waiting for in-flight jobs", metadata: ["jobs": "\(inFlight)"])
                // The ticker rings every 100 ms while stopping; a finished job rings at once.
                action = .waitForWakeUp
            case .finishDrain(let cancel, let stopFinisher):
                if !cancel.isEmpty {
                    logger.warning(
                        "shutdown timeout reached; cancelling unfinished jobs", metadata: ["jobs": "\(cancel.count)"])
                    for stop in cancel { stop.yield(.shutdown) }
                }
                // Jobs claimed with outcomes before the drain ended are on the books: their tasks
                // start now, see the shutdown at once, and release them.
                startHandedOff(finisher: finisher, group: &group)
                if let stopFinisher { finisher.stop(deadline: stopFinisher) }
                return
            }
        }
    }

    private func awake(_ clock: ContinuousClock) -> State.Action {
        let cancelled = Task.isCancelled
        return state.withLock { state in
            if cancelled { state.shutdownRequested() }
            return state.wakeUp(now: clock.now)
        }
    }

    private func claim(_ connections: PQConnectionPool, limit: Int) async throws -> JobStore.Claimed {
        try await connections.withConnection { connection in
            let statement = claimStatement(limit: limit)
            let rows = try await connection.query(statement.query, statement.bindings)
            return try await jobs(claimedBy: rows, on: connection)
        }
    }

    /// The claim of up to `limit` jobs, run alone or at the end of an outcome transaction.
    func claimStatement(limit: Int) -> PQStatement {
        store.claimStatement(kinds: kinds, keyLimits: keyLimits, limit: limit, lease: configuration.lease)
    }

    /// The jobs a claim's rows hold, with their trace contexts while tracing is on.
    func jobs(claimedBy rows: PQResult, on connection: PQConnection) async throws -> JobStore.Claimed {
        var claimed = try store.claimed(rows, maxAttempts: { self.policy(for: $0).maxAttempts })
        if configuration.tracing.isOn {
            claimed.jobs = await configuration.tracing.withTraceContexts(
                claimed.jobs, schema: configuration.schema, connection: connection, logger: logger)
        }
        return claimed
    }

    /// Puts the claimed jobs on the books, starts one task per job, and sends the unreadable rows
    /// to the dead letters.
    private func started(
        _ claimed: JobStore.Claimed, finisher: Finisher, group: inout DiscardingTaskGroup, clock: ContinuousClock
    ) -> State.Action {
        let attempts = claimed.jobs.map(Attempt.init)
        let unreadable = claimed.unreadable.map { AttemptKey(id: $0.job.id, attempt: $0.job.attempt) }
        let next = state.withLock { state in
            state.claimReturned(
                started: attempts.map { ($0.key, $0.stop) }, unreadable: unreadable,
                keys: Set(claimed.jobs.lazy.compactMap(\.concurrencyKey)).count, now: clock.now)
        }
        start(attempts, unreadable: claimed.unreadable, finisher: finisher, group: &group)
        return next
    }

    /// Starts one task per attempt put on the books, and sends the unreadable rows to the dead
    /// letters.
    func start(
        _ attempts: [Attempt], unreadable: [(job: Job, reason: String)], finisher: Finisher,
        group: inout DiscardingTaskGroup
    ) {
        for attempt in attempts {
            Counter(label: metrics.jobsClaimed, dimensions: [("kind", attempt.job.kind)]).increment()
        }
        if !attempts.isEmpty { Gauge(label: metrics.jobsInFlight).record(inFlightCount) }
        for attempt in attempts {
            group.addTask {
                await self.process(
                    attempt.job, key: attempt.key, stops: attempt.stops, stop: attempt.stop, finisher: finisher)
            }
        }
        for (job, reason) in unreadable { deadLetterUnreadable(job, reason: reason, finisher: finisher) }
    }

    /// A claimed row that is not a readable job goes to the dead letters with the reason, at once
    /// (the state machine has put it among the outcomes being written).
    private func deadLetterUnreadable(_ job: Job, reason: String, finisher: Finisher) {
        logger.error(
            "a claimed job row could not be read; moving it to the dead letters",
            metadata: ["job.id": "\(job.id)", "job.kind": "\(job.kind)", "error": "\(reason)"])
        finisher.submit(
            .init(
                job: job, resolution: .deadLetter(reason: .permanentFailure, error: reason), statements: [],
                ended: .now))
    }

    func policy(for kind: String) -> any RetryStrategy {
        handlers[kind]?.retryStrategy ?? configuration.retryStrategy
    }
}
