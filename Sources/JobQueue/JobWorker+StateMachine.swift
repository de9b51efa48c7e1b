extension JobWorker {
    /// The worker's bookkeeping as a value: which attempts hold a slot, whether a claim is out,
    /// and how far a shutdown has got. The worker keeps one in a `Mutex`, tells it what happened
    /// (an event: a wake-up, a claim's return, a handler's return, a lost lease, a shutdown) and
    /// does what it answers (an action: claim so many jobs, wait for the next wake-up, cancel
    /// these handlers, stop the finisher). It does no I/O and reads no clock: time comes in with
    /// the events, so every transition is tested without a database (JobWorkerStateMachineTests).
    ///
    /// Slots: `concurrency` bounds the handlers running plus the slots held for claims in outcome
    /// transactions. A keyed job's handler that returns keeps its slot (``handlerReturned(_:holdsSlot:)``)
    /// for the transaction that writes its outcome: that transaction claims the next jobs into
    /// the slots its outcomes hold (its key's next job could not be claimed before that commit),
    /// and ``claimedWithOutcomes(freeing:started:unreadable:)`` puts them on the books. Slots not
    /// filled that way go back to the claim loop then, or when the outcome is recorded.
    ///
    /// Phases: `claiming` (waiting for a wake-up, or a claim in flight) until a shutdown is seen,
    /// then `draining` (in-flight jobs finish until the shutdown timeout), then `finished` (the
    /// handlers still running are cancelled, and the last of them to return stops the finisher).
    ///
    /// `Stop` is what cancels one handler: the worker's is a stream continuation, the tests' a
    /// plain value.
    struct StateMachine<Stop: Sendable>: Sendable {
        /// Handlers running now; `concurrency` bounds these.
        private var running: [AttemptKey: Running] = [:]
        /// Attempts whose handler returned and whose outcome is being written; true while the
        /// attempt still holds its slot for its outcome transaction's claim.
        private var writing: [AttemptKey: Bool] = [:]
        /// Slots held by attempts in `writing` for their outcome transaction's claim.
        private(set) var heldSlots = 0
        private var phase: Phase = .claiming(.idle)
        /// Set by ``shutdownRequested()``; a claim loop that sees it stops claiming.
        private(set) var isStopping = false
        private let limits: Limits
        /// When the last claim began, and whether it took all it asked for (more was waiting),
        /// jobs of at least ``Limits/gatherKeys`` keys among them.
        private var lastClaimAt: ContinuousClock.Instant?
        private var lastClaimWasFull = false

        struct Running: Sendable {
            let stop: Stop
            /// Why the handler was cancelled, once it was.
            var stopped: StopReason?
        }

        /// The configuration the machine decides by.
        struct Limits: Sendable, Equatable {
            var concurrency: Int
            var claimBatchSize: Int
            var shutdownTimeout: Duration
            var shutdownGrace: Duration
            /// After a claim that took all it asked for, jobs of at least ``gatherKeys`` keys
            /// among them, the next one waits until half the slots are free, or until this long
            /// after the last claim began ("gathering"); zero: never.
            var gatherWait: Duration = .zero
            /// The concurrency keys a full claim must have visited to gather. A keyed claim's cost
            /// is mostly for each key it visits: with 16 keys, fewer and larger claims saved the
            /// database a quarter to a third of its time a delivery; with one or two there is
            /// little to save, and waiting would hold slots idle.
            var gatherKeys = 4

            /// The free slots that end a gathering wait at once.
            var gatherSlots: Int { concurrency / 2 }
        }

        enum Claiming: Sendable, Equatable {
            case idle
            /// A claim of up to `limit` jobs is out.
            case inFlight(limit: Int)
        }

        enum Phase: Sendable, Equatable {
            case claiming(Claiming)
            /// Claiming is over; in-flight jobs may finish until `deadline`.
            case draining(deadline: ContinuousClock.Instant)
            /// The finisher ends at `finisherDeadline`; `finisherStopped` once it was told so.
            case finished(finisherDeadline: ContinuousClock.Instant, finisherStopped: Bool)
        }

        /// What the claim loop does next.
        enum Action: Sendable {
            /// Claim up to `limit` jobs, then report ``claimReturned(started:unreadable:now:)`` or
            /// ``claimFailed(now:)``.
            case claim(limit: Int)
            /// Wait for the next wake-up, then report ``wakeUp(now:)``.
            case waitForWakeUp
            /// Gathering: more jobs wait than the last claim took, of several keys, and fewer
            /// than half the slots are free. Wait for the next wake-up or until `until`, whichever
            /// comes first, then report ``wakeUp(now:)``. A claim is cheaper per job the more it
            /// takes: with keyed jobs, most of its cost is for each key it visits.
            case gather(until: ContinuousClock.Instant)
            /// Claiming is over with `inFlight` jobs held: say so, then wait for wake-ups.
            case startDrain(inFlight: Int)
            /// The drain is over: cancel these handlers (their jobs are released), and stop the
            /// finisher at `stopFinisher` when it is given (when nothing is left running; else
            /// the last cancelled handler to return stops it).
            case finishDrain(cancel: [Stop], stopFinisher: ContinuousClock.Instant?)
        }

        /// What to do with a handler that returned.
        struct HandlerReturned: Sendable {
            /// Why it was cancelled, if it was.
            var stopped: StopReason?
            /// Stop the finisher at this deadline after submitting the outcome: this was the last
            /// handler the shutdown waited for.
            var stopFinisher: ContinuousClock.Instant?
            /// The slot passed to the outcome's claim: none freed, so the claim loop has nothing new.
            var holdsSlot = false
            /// Wake the claim loop: the slot freed is one it waits for (every slot was taken), or
            /// a shutdown is under way. Otherwise it has nothing new: it has slots, its last claim
            /// found no more to run, and the job that ended frees nothing in the database before
            /// its outcome is committed (and the commit wakes it then).
            var wakesClaimLoop = false
        }

        init(limits: Limits) {
            self.limits = limits
        }

        /// Jobs held: running, or finished and waiting for their outcome to be written.
        var inFlight: Int { running.count + writing.count }
        var runningCount: Int { running.count }
        var currentPhase: Phase { phase }

        /// Slots for new jobs: a slot frees when its handler returns (or, when it holds its slot
        /// for its outcome's claim, when that claim returns), so claiming goes on while outcomes
        /// are written; jobs whose outcome waits to be written are bounded too.
        var freeSlots: Int {
            min(limits.concurrency - running.count - heldSlots, 2 * limits.concurrency - inFlight)
        }

        // MARK: Claiming

        /// A shutdown (SIGTERM, ``JobWorker/shutdown()``, cancellation) was asked for. The worker
        /// rings its wake-ups after this, so that a waiting claim loop sees it.
        mutating func shutdownRequested() {
            isStopping = true
        }

        /// The claim loop is awake (it started, or a wake-up rang): claim, wait, or go on draining.
        mutating func wakeUp(now: ContinuousClock.Instant) -> Action {
            switch phase {
            case .claiming(.idle):
                if isStopping { return startDrain(now: now) }
                if let until = gatherUntil(now: now) { return .gather(until: until) }
                return claimIfFree(now: now)
            case .claiming(.inFlight):
                preconditionFailure("a wake-up reached the claim loop while its claim was out")
            case .draining(let deadline):
                if inFlight == 0 || now >= deadline { return finishDrain(now: now, deadline: deadline) }
                return .waitForWakeUp
            case .finished:
                preconditionFailure("a wake-up reached the claim loop after the drain ended")
            }
        }

        /// The wake-ups ended (the worker's task was cancelled): claiming and draining are over now.
        mutating func wakeUpsEnded(now: ContinuousClock.Instant) -> Action {
            isStopping = true
            switch phase {
            case .claiming:
                phase = .draining(deadline: now + limits.shutdownTimeout)
                return wakeUpsEnded(now: now)
            case .draining(let deadline):
                return finishDrain(now: now, deadline: deadline)
            case .finished:
                preconditionFailure("the wake-ups ended after the drain ended")
            }
        }

        /// The claim returned: `started` are the jobs to run (each with what cancels it),
        /// `unreadable` the rows that go straight to the dead letters (their outcome is written).
        /// `keys`: the distinct concurrency keys of the jobs it took. Only a claim of at least
        /// ``Limits/gatherKeys`` keys gathers: a claim of jobs without a key costs little whatever
        /// it takes, and waiting would only slow a drain.
        mutating func claimReturned(
            started: [(AttemptKey, Stop)], unreadable: [AttemptKey], keys: Int = 0, now: ContinuousClock.Instant
        ) -> Action {
            guard case .claiming(.inFlight(let limit)) = phase else {
                preconditionFailure("a claim returned that was not out")
            }
            phase = .claiming(.idle)
            for (key, stop) in started { running[key] = Running(stop: stop) }
            for key in unreadable { writing[key] = false }
            if isStopping { return startDrain(now: now) }
            // A full batch means more may be waiting: claim again while slots are free, at once
            // or, with fewer than half of them free, once gathering is over.
            let full = started.count + unreadable.count == limit
            lastClaimWasFull = full && keys >= limits.gatherKeys
            guard full && freeSlots > 0 else { return .waitForWakeUp }
            if let until = gatherUntil(now: now) { return .gather(until: until) }
            return claimIfFree(now: now)
        }

        /// The claim failed: the poll ticker's next wake-up is the retry's pace.
        mutating func claimFailed(now: ContinuousClock.Instant) -> Action {
            guard case .claiming(.inFlight) = phase else { preconditionFailure("a claim failed that was not out") }
            phase = .claiming(.idle)
            lastClaimWasFull = false
            if isStopping { return startDrain(now: now) }
            return .waitForWakeUp
        }

        private mutating func claimIfFree(now: ContinuousClock.Instant) -> Action {
            let free = freeSlots
            guard free > 0 else { return .waitForWakeUp }
            let limit = min(free, limits.claimBatchSize)
            phase = .claiming(.inFlight(limit: limit))
            lastClaimAt = now
            return .claim(limit: limit)
        }

        /// When gathering ends, while it goes on: the last claim was full, some but fewer than
        /// half the slots are free, and the wait since that claim began is not over.
        private func gatherUntil(now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
            guard lastClaimWasFull, limits.gatherWait > .zero, let last = lastClaimAt else { return nil }
            let free = freeSlots
            guard free > 0, free < limits.gatherSlots, now < last + limits.gatherWait else { return nil }
            return last + limits.gatherWait
        }

        // MARK: Draining

        private mutating func startDrain(now: ContinuousClock.Instant) -> Action {
            let deadline = now + limits.shutdownTimeout
            phase = .draining(deadline: deadline)
            if inFlight == 0 { return finishDrain(now: now, deadline: deadline) }
            return .startDrain(inFlight: inFlight)
        }

        /// Cancels the handlers still running and sets the finisher's deadline: the shutdown
        /// timeout plus a grace for the cancelled jobs' releases (the finisher stops as soon as
        /// the last one is written). Outcomes still unwritten at the timeout (a database that is
        /// down) are given up then; only the releases of handlers cancelled now get the grace.
        private mutating func finishDrain(now: ContinuousClock.Instant, deadline: ContinuousClock.Instant) -> Action {
            let cancel = running.keys.sorted().map { key in
                running[key]!.stopped = .shutdown
                return running[key]!.stop
            }
            let finisherDeadline = running.isEmpty ? deadline : max(deadline, now) + limits.shutdownGrace
            phase = .finished(finisherDeadline: finisherDeadline, finisherStopped: running.isEmpty)
            return .finishDrain(cancel: cancel, stopFinisher: running.isEmpty ? finisherDeadline : nil)
        }

        // MARK: Jobs

        /// A handler returned: its outcome is being written, and its slot frees now, or, when
        /// `holdsSlot` (a keyed job: its key's next job can be claimed only once this outcome is
        /// committed), passes to the claim in the transaction that writes the outcome. No slot
        /// is held once a shutdown has begun (that claim would start jobs only to release them).
        mutating func handlerReturned(_ key: AttemptKey, holdsSlot: Bool = false) -> HandlerReturned {
            let slotsWereTaken = freeSlots <= 0
            let stopped = running.removeValue(forKey: key)?.stopped
            let holds = holdsSlot && stopped == nil && !isStopping
            if writing.updateValue(holds, forKey: key) == true { heldSlots -= 1 }
            if holds { heldSlots += 1 }
            var returned = HandlerReturned(
                stopped: stopped, holdsSlot: holds, wakesClaimLoop: isStopping || (slotsWereTaken && freeSlots > 0))
            guard running.isEmpty, case .finished(finisherDeadline: let deadline, finisherStopped: false) = phase else {
                return returned
            }
            phase = .finished(finisherDeadline: deadline, finisherStopped: true)
            returned.stopFinisher = deadline
            return returned
        }

        /// The finisher wrote (or gave up) these attempts' outcomes: they leave the books, and
        /// the slots they still held go back to the claim loop.
        mutating func outcomesRecorded(_ keys: [AttemptKey]) {
            for key in keys where writing.removeValue(forKey: key) == true { heldSlots -= 1 }
        }

        // MARK: Claims in outcome transactions

        /// How many jobs the transaction writing these attempts' outcomes claims: the slots they
        /// hold, none once a shutdown has begun.
        func slotsHeld(by keys: [AttemptKey]) -> Int {
            guard !isStopping else { return 0 }
            return keys.reduce(0) { $0 + (writing[$1] == true ? 1 : 0) }
        }

        /// The transaction writing the outcomes of `batch` committed, with the jobs its claim
        /// took (none when it made no claim or did not commit): the slots `batch` held pass to
        /// `started` and `unreadable`, and those left over go back to the claim loop. Answers
        /// false, and changes nothing but the slots, once the drain has ended: nothing runs the
        /// jobs then, and the caller releases them.
        mutating func claimedWithOutcomes(
            freeing batch: [AttemptKey], started: [(AttemptKey, Stop)], unreadable: [AttemptKey]
        ) -> Bool {
            for key in batch where writing[key] == true {
                writing[key] = false
                heldSlots -= 1
            }
            if case .finished = phase { return false }
            for (key, stop) in started { running[key] = Running(stop: stop) }
            for key in unreadable { writing[key] = false }
            return true
        }

        // MARK: Leases

        /// The jobs whose leases this replica renews: running, or waiting for their outcome.
        var heldJobIDs: [Int64] {
            Array(Set(running.keys.map(\.id)).union(writing.keys.map(\.id))).sorted()
        }

        /// The leases of these jobs are gone: cancel their handlers, which work for nothing now
        /// (another replica may run the job, and their outcome would be dropped). A job whose
        /// outcome is being written may already be back in the queue: it is not lost.
        mutating func leaseLost(_ ids: Set<Int64>) -> [(AttemptKey, Stop)] {
            running.keys.filter { ids.contains($0.id) }.sorted().map { key in
                running[key]!.stopped = .leaseLost
                return (key, running[key]!.stop)
            }
        }
    }
}

extension JobWorker.AttemptKey: Comparable {
    static func < (lhs: Self, rhs: Self) -> Bool { (lhs.id, lhs.attempt) < (rhs.id, rhs.attempt) }
}

extension JobWorker.StateMachine.Action: Equatable where Stop: Equatable {}
extension JobWorker.StateMachine.HandlerReturned: Equatable {}
