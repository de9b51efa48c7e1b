@testable import JobQueue
import Testing

/// The worker's bookkeeping, event by event, without a database: each test feeds the machine
/// events and asserts the exact actions it answers. A handler's "stop" is its name here.
@Suite("Worker state machine")
struct JobWorkerStateMachineTests {
    typealias Machine = JobWorker.StateMachine<String>
    typealias Key = JobWorker.AttemptKey

    let start = ContinuousClock.now

    func machine(
        concurrency: Int = 4, claimBatchSize: Int = 100, shutdownTimeout: Duration = .seconds(30),
        shutdownGrace: Duration = .seconds(3)
    ) -> Machine {
        Machine(
            limits: .init(
                concurrency: concurrency, claimBatchSize: claimBatchSize, shutdownTimeout: shutdownTimeout,
                shutdownGrace: shutdownGrace))
    }

    func key(_ id: Int64, attempt: Int = 1) -> Key { Key(id: id, attempt: attempt) }

    /// Jobs `ids` started, each stopped by "job<id>".
    func jobs(_ ids: ClosedRange<Int64>) -> [(Key, String)] { ids.map { (key($0), "job\($0)") } }

    func at(_ seconds: Double) -> ContinuousClock.Instant { start + .milliseconds(Int64(seconds * 1000)) }

    // MARK: Claiming

    @Test("awake and idle: claims as many jobs as there are slots, at most a batch")
    func firstClaim() {
        var small = machine(concurrency: 4, claimBatchSize: 100)
        #expect(small.wakeUp(now: at(0)) == .claim(limit: 4))
        #expect(small.currentPhase == .claiming(.inFlight(limit: 4)))
        var large = machine(concurrency: 250, claimBatchSize: 100)
        #expect(large.wakeUp(now: at(0)) == .claim(limit: 100))
    }

    @Test("a full batch claims again at once while slots are free; a short one waits")
    func fullBatchClaimsAgain() {
        var machine = machine(concurrency: 7, claimBatchSize: 3)
        #expect(machine.wakeUp(now: at(0)) == .claim(limit: 3))
        #expect(machine.claimReturned(started: jobs(1...3), unreadable: [], now: at(0)) == .claim(limit: 3))
        #expect(machine.claimReturned(started: jobs(4...6), unreadable: [], now: at(0)) == .claim(limit: 1))
        // Full (1 of 1) but no slot left: wait.
        #expect(machine.claimReturned(started: jobs(7...7), unreadable: [], now: at(0)) == .waitForWakeUp)
        #expect(machine.inFlight == 7)
        #expect(machine.freeSlots == 0)
        #expect(machine.wakeUp(now: at(1)) == .waitForWakeUp, "no slot: a wake-up does not claim")

        var short = self.machine(concurrency: 4, claimBatchSize: 3)
        #expect(short.wakeUp(now: at(0)) == .claim(limit: 3))
        #expect(short.claimReturned(started: jobs(1...2), unreadable: [], now: at(0)) == .waitForWakeUp)
        #expect(short.currentPhase == .claiming(.idle))
        #expect(short.wakeUp(now: at(1)) == .claim(limit: 2))
    }

    @Test("unreadable rows count toward a full batch and are held until their outcome is written")
    func unreadableRows() {
        var machine = machine(concurrency: 4, claimBatchSize: 2)
        #expect(machine.wakeUp(now: at(0)) == .claim(limit: 2))
        #expect(machine.claimReturned(started: jobs(1...1), unreadable: [key(2)], now: at(0)) == .claim(limit: 2))
        #expect(machine.runningCount == 1)
        #expect(machine.inFlight == 2)
        #expect(machine.heldJobIDs == [1, 2])
        #expect(machine.claimReturned(started: [], unreadable: [], now: at(0)) == .waitForWakeUp)
        machine.outcomesRecorded([key(2)])
        #expect(machine.inFlight == 1)
        #expect(machine.heldJobIDs == [1])
    }

    @Test("a slot frees when the handler returns; outcomes being written are bounded at the concurrency")
    func slotsAndWritingBound() {
        var machine = machine(concurrency: 2)
        #expect(machine.wakeUp(now: at(0)) == .claim(limit: 2))
        #expect(machine.claimReturned(started: jobs(1...2), unreadable: [], now: at(0)) == .waitForWakeUp)
        #expect(machine.handlerReturned(key(1)) == .init(stopped: nil, stopFinisher: nil, wakesClaimLoop: true))
        #expect(machine.inFlight == 2, "a returned job is held until its outcome is written")
        #expect(machine.wakeUp(now: at(1)) == .claim(limit: 1))
        #expect(machine.claimReturned(started: jobs(3...3), unreadable: [], now: at(1)) == .waitForWakeUp)
        #expect(machine.handlerReturned(key(2)) == .init(stopped: nil, stopFinisher: nil, wakesClaimLoop: true))
        #expect(machine.handlerReturned(key(3)) == .init(stopped: nil, stopFinisher: nil))
        // Nothing runs, but three outcomes wait: one more slot, not two.
        #expect(machine.runningCount == 0)
        #expect(machine.wakeUp(now: at(2)) == .claim(limit: 1))
        #expect(machine.claimReturned(started: jobs(4...4), unreadable: [], now: at(2)) == .waitForWakeUp)
        #expect(machine.wakeUp(now: at(3)) == .waitForWakeUp)
        machine.outcomesRecorded([key(1), key(2), key(3)])
        #expect(machine.inFlight == 1)
        #expect(machine.wakeUp(now: at(4)) == .claim(limit: 1))
    }

    @Test("a handler that returns wakes the claim loop only for a slot it waits for, or while stopping")
    func handlerReturnWakesClaimLoop() {
        var machine = machine(concurrency: 3)
        #expect(machine.wakeUp(now: at(0)) == .claim(limit: 3))
        // A short claim: the loop has a slot and found nothing more to run.
        #expect(machine.claimReturned(started: jobs(1...2), unreadable: [], now: at(0)) == .waitForWakeUp)
        #expect(!machine.handlerReturned(key(1)).wakesClaimLoop, "the loop had a free slot already")
        #expect(machine.wakeUp(now: at(1)) == .claim(limit: 2))
        #expect(machine.claimReturned(started: jobs(3...4), unreadable: [], now: at(1)) == .waitForWakeUp)
        // Every slot taken: the one job 2 frees is one the loop waits for.
        #expect(machine.handlerReturned(key(2)).wakesClaimLoop)
        #expect(machine.wakeUp(now: at(2)) == .claim(limit: 1))
        #expect(machine.claimReturned(started: jobs(5...5), unreadable: [], now: at(2)) == .waitForWakeUp)
        // A slot held for the outcome's claim frees nothing.
        let held = machine.handlerReturned(key(3), holdsSlot: true)
        #expect(held.holdsSlot && !held.wakesClaimLoop)
        machine.shutdownRequested()
        #expect(machine.handlerReturned(key(4)).wakesClaimLoop, "while stopping, every return wakes it")
    }

    @Test("a failed claim waits for the next wake-up (the poll's pace), then claims again")
    func claimFails() {
        var machine = machine(concurrency: 3)
        #expect(machine.wakeUp(now: at(0)) == .claim(limit: 3))
        #expect(machine.claimFailed(now: at(0)) == .waitForWakeUp)
        #expect(machine.currentPhase == .claiming(.idle))
        #expect(machine.wakeUp(now: at(2)) == .claim(limit: 3))
    }

    // MARK: Shutdown

    @Test("a shutdown with nothing in flight ends the drain at once; the finisher stops at the timeout")
    func shutdownIdle() {
        var machine = machine(shutdownTimeout: .seconds(30))
        #expect(!machine.isStopping)
        machine.shutdownRequested()
        #expect(machine.isStopping)
        #expect(machine.wakeUp(now: at(1)) == .finishDrain(cancel: [], stopFinisher: at(31)))
        #expect(machine.currentPhase == .finished(finisherDeadline: at(31), finisherStopped: true))
    }

    @Test("a shutdown waits for in-flight jobs and their outcomes, then ends the drain")
    func shutdownDrains() {
        var machine = machine(shutdownTimeout: .seconds(10))
        _ = machine.wakeUp(now: at(0))
        _ = machine.claimReturned(started: jobs(1...2), unreadable: [], now: at(0))
        machine.shutdownRequested()
        #expect(machine.wakeUp(now: at(1)) == .startDrain(inFlight: 2))
        #expect(machine.currentPhase == .draining(deadline: at(11)))
        #expect(machine.wakeUp(now: at(2)) == .waitForWakeUp)
        #expect(machine.handlerReturned(key(1)) == .init(stopped: nil, stopFinisher: nil, wakesClaimLoop: true))
        #expect(machine.handlerReturned(key(2)) == .init(stopped: nil, stopFinisher: nil, wakesClaimLoop: true))
        #expect(machine.wakeUp(now: at(3)) == .waitForWakeUp, "outcomes are still being written")
        machine.outcomesRecorded([key(1), key(2)])
        #expect(machine.wakeUp(now: at(4)) == .finishDrain(cancel: [], stopFinisher: at(11)))
    }

    @Test("at the shutdown timeout the handlers still running are cancelled; the last to return stops the finisher")
    func shutdownTimeoutCancels() {
        var machine = machine(shutdownTimeout: .seconds(10), shutdownGrace: .seconds(3))
        _ = machine.wakeUp(now: at(0))
        _ = machine.claimReturned(started: jobs(1...3), unreadable: [], now: at(0))
        #expect(machine.handlerReturned(key(2)) == .init(stopped: nil, stopFinisher: nil))
        machine.shutdownRequested()
        #expect(machine.wakeUp(now: at(1)) == .startDrain(inFlight: 3))
        #expect(machine.wakeUp(now: at(10.9)) == .waitForWakeUp)
        // The ticker's wake-up came late: the grace counts from now.
        #expect(machine.wakeUp(now: at(12)) == .finishDrain(cancel: ["job1", "job3"], stopFinisher: nil))
        #expect(machine.currentPhase == .finished(finisherDeadline: at(15), finisherStopped: false))
        #expect(machine.handlerReturned(key(3)) == .init(stopped: .shutdown, stopFinisher: nil, wakesClaimLoop: true))
        #expect(
            machine.handlerReturned(key(1)) == .init(stopped: .shutdown, stopFinisher: at(15), wakesClaimLoop: true))
        #expect(machine.currentPhase == .finished(finisherDeadline: at(15), finisherStopped: true))
    }

    @Test("at the shutdown timeout with only outcomes left to write, the finisher stops at the timeout")
    func shutdownTimeoutWhileWriting() {
        var machine = machine(shutdownTimeout: .seconds(10))
        _ = machine.wakeUp(now: at(0))
        _ = machine.claimReturned(started: jobs(1...1), unreadable: [], now: at(0))
        _ = machine.handlerReturned(key(1))
        machine.shutdownRequested()
        #expect(machine.wakeUp(now: at(1)) == .startDrain(inFlight: 1))
        #expect(machine.wakeUp(now: at(11)) == .finishDrain(cancel: [], stopFinisher: at(11)))
    }

    @Test("a shutdown during a claim: the claimed jobs are put on the books and the drain starts")
    func shutdownDuringClaim() {
        var machine = machine(concurrency: 4, claimBatchSize: 2, shutdownTimeout: .seconds(5))
        #expect(machine.wakeUp(now: at(0)) == .claim(limit: 2))
        machine.shutdownRequested()
        // A full batch would claim again, but the worker is stopping.
        #expect(machine.claimReturned(started: jobs(1...2), unreadable: [], now: at(1)) == .startDrain(inFlight: 2))
        #expect(machine.currentPhase == .draining(deadline: at(6)))

        var failing = self.machine(shutdownTimeout: .seconds(5))
        #expect(failing.wakeUp(now: at(0)) == .claim(limit: 4))
        failing.shutdownRequested()
        #expect(failing.claimFailed(now: at(1)) == .finishDrain(cancel: [], stopFinisher: at(6)))
    }

    @Test("the wake-ups end (the task was cancelled): the drain ends at once and cancels what runs")
    func wakeUpsEnd() {
        var machine = machine(shutdownTimeout: .seconds(10), shutdownGrace: .seconds(3))
        _ = machine.wakeUp(now: at(0))
        _ = machine.claimReturned(started: jobs(1...2), unreadable: [], now: at(0))
        #expect(machine.wakeUpsEnded(now: at(1)) == .finishDrain(cancel: ["job1", "job2"], stopFinisher: nil))
        #expect(machine.isStopping)
        #expect(machine.currentPhase == .finished(finisherDeadline: at(14), finisherStopped: false))

        var draining = self.machine(shutdownTimeout: .seconds(10))
        _ = draining.wakeUp(now: at(0))
        _ = draining.claimReturned(started: jobs(1...1), unreadable: [], now: at(0))
        _ = draining.handlerReturned(key(1))
        draining.shutdownRequested()
        #expect(draining.wakeUp(now: at(1)) == .startDrain(inFlight: 1))
        #expect(draining.wakeUpsEnded(now: at(2)) == .finishDrain(cancel: [], stopFinisher: at(11)))

        var idle = self.machine(shutdownTimeout: .seconds(10))
        #expect(idle.wakeUpsEnded(now: at(1)) == .finishDrain(cancel: [], stopFinisher: at(11)))
    }

    // MARK: Leases

    @Test("a lost lease cancels the running attempts of that job, not the ones being written; the reason sticks")
    func leaseLost() {
        var machine = machine(concurrency: 5)
        _ = machine.wakeUp(now: at(0))
        _ = machine.claimReturned(started: jobs(1...3), unreadable: [], now: at(0))
        _ = machine.handlerReturned(key(2))
        #expect(machine.heldJobIDs == [1, 2, 3])
        let cancelled = machine.leaseLost([2, 3, 9])
        #expect(cancelled.map(\.0) == [key(3)])
        #expect(cancelled.map(\.1) == ["job3"])
        #expect(machine.leaseLost([]).isEmpty)
        #expect(machine.handlerReturned(key(3)) == .init(stopped: .leaseLost, stopFinisher: nil))
        #expect(machine.handlerReturned(key(1)) == .init(stopped: nil, stopFinisher: nil))
    }

    @Test("two attempts of one job are kept apart: the old one returning leaves the new one running")
    func attemptsKeptApart() {
        var machine = machine(concurrency: 4)
        _ = machine.wakeUp(now: at(0))
        _ = machine.claimReturned(started: [(key(1, attempt: 1), "first")], unreadable: [], now: at(0))
        _ = machine.wakeUp(now: at(1))
        _ = machine.claimReturned(started: [(key(1, attempt: 2), "second")], unreadable: [], now: at(1))
        #expect(machine.runningCount == 2)
        #expect(machine.heldJobIDs == [1])
        #expect(machine.handlerReturned(key(1, attempt: 1)) == .init(stopped: nil, stopFinisher: nil))
        machine.outcomesRecorded([key(1, attempt: 1)])
        #expect(machine.runningCount == 1)
        #expect(machine.inFlight == 1)
        #expect(machine.leaseLost([1]).map(\.1) == ["second"])
    }
}
