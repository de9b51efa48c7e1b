@testable import JobQueue
import Testing

/// Gathering: after a claim that took all it asked for, the next waits until half the slots are
/// free or until the gather wait since that claim began is over.
extension JobWorkerStateMachineTests {
    func gathering(concurrency: Int = 8, claimBatchSize: Int = 4, wait: Duration = .milliseconds(50)) -> Machine {
        Machine(
            limits: .init(
                concurrency: concurrency, claimBatchSize: claimBatchSize, shutdownTimeout: .seconds(30),
                shutdownGrace: .seconds(3), gatherWait: wait))
    }

    @Test("after a full claim, fewer than half the slots free: gather until half are free or the wait is over")
    func gatherUntilHalfOrWait() {
        var machine = gathering()
        #expect(machine.wakeUp(now: at(0)) == .claim(limit: 4))
        // Full, and 4 of 8 free (half): claims again at once, as without gathering.
        #expect(
            machine.claimReturned(started: jobs(1...4), unreadable: [], keys: 4, now: at(0.01)) == .claim(limit: 4))
        // Full again, no slot free: wait for a wake-up.
        #expect(
            machine.claimReturned(started: jobs(5...8), unreadable: [], keys: 4, now: at(0.02)) == .waitForWakeUp)
        // One handler returns: 1 slot free of 8. The wait counts from when the last claim began (0.01).
        #expect(machine.handlerReturned(key(1)).wakesClaimLoop)
        #expect(machine.wakeUp(now: at(0.03)) == .gather(until: at(0.06)))
        #expect(machine.currentPhase == .claiming(.idle))
        _ = machine.handlerReturned(key(2))
        _ = machine.handlerReturned(key(3))
        #expect(machine.wakeUp(now: at(0.04)) == .gather(until: at(0.06)), "3 free of 8: still fewer than half")
        _ = machine.handlerReturned(key(4))
        #expect(machine.wakeUp(now: at(0.045)) == .claim(limit: 4), "half the slots free: claims at once")
        // Full, none free; one returns; the wait now counts from 0.045, and its end claims what is free.
        #expect(
            machine.claimReturned(started: jobs(9...12), unreadable: [], keys: 4, now: at(0.05)) == .waitForWakeUp)
        _ = machine.handlerReturned(key(5))
        #expect(machine.wakeUp(now: at(0.06)) == .gather(until: at(0.095)))
        #expect(machine.wakeUp(now: at(0.095)) == .claim(limit: 1))
    }

    @Test("a claim that took less than it asked for ends gathering: the queue is drained, claims are at once")
    func shortClaimEndsGathering() {
        var machine = gathering()
        #expect(machine.wakeUp(now: at(0)) == .claim(limit: 4))
        #expect(
            machine.claimReturned(started: jobs(1...4), unreadable: [], keys: 4, now: at(0)) == .claim(limit: 4))
        #expect(
            machine.claimReturned(started: jobs(5...7), unreadable: [], keys: 4, now: at(0.001)) == .waitForWakeUp)
        _ = machine.handlerReturned(key(1))
        // 2 free of 8, but the last claim was short: nothing more was waiting then.
        #expect(machine.wakeUp(now: at(0.002)) == .claim(limit: 2))
    }

    @Test("a full claim that leaves fewer than half free gathers at once, and a failed claim ends gathering")
    func fullClaimGathersAndFailureEnds() {
        var machine = gathering(concurrency: 8, claimBatchSize: 6)
        #expect(machine.wakeUp(now: at(0)) == .claim(limit: 6))
        #expect(
            machine.claimReturned(started: jobs(1...6), unreadable: [], keys: 4, now: at(0.01))
                == .gather(until: at(0.05)))
        #expect(machine.wakeUp(now: at(0.05)) == .claim(limit: 2), "the wait is over")
        #expect(machine.claimFailed(now: at(0.06)) == .waitForWakeUp)
        _ = machine.handlerReturned(key(1))
        #expect(machine.wakeUp(now: at(0.07)) == .claim(limit: 3), "after a failure, no gathering")
    }

    @Test("gathering off (a zero wait), a shutdown, or no free slot: no gather")
    func noGather() {
        var off = gathering(wait: .zero)
        #expect(off.wakeUp(now: at(0)) == .claim(limit: 4))
        #expect(off.claimReturned(started: jobs(1...4), unreadable: [], keys: 4, now: at(0)) == .claim(limit: 4))
        #expect(off.claimReturned(started: jobs(5...8), unreadable: [], keys: 4, now: at(0)) == .waitForWakeUp)
        _ = off.handlerReturned(key(1))
        #expect(off.wakeUp(now: at(0.001)) == .claim(limit: 1))

        var stopping = gathering()
        #expect(stopping.wakeUp(now: at(0)) == .claim(limit: 4))
        #expect(
            stopping.claimReturned(started: jobs(1...4), unreadable: [], keys: 4, now: at(0)) == .claim(limit: 4))
        #expect(stopping.claimReturned(started: jobs(5...8), unreadable: [], keys: 4, now: at(0)) == .waitForWakeUp)
        #expect(stopping.wakeUp(now: at(0.001)) == .waitForWakeUp, "no slot free: nothing to gather for")
        _ = stopping.handlerReturned(key(1))
        stopping.shutdownRequested()
        #expect(stopping.wakeUp(now: at(0.002)) == .startDrain(inFlight: 8))
    }
}

extension JobWorkerStateMachineTests {
    @Test("a full claim of jobs without a key, or of fewer than 4 keys, does not gather; one of 4 keys does")
    func unkeyedClaimsDoNotGather() {
        var machine = gathering()
        #expect(machine.wakeUp(now: at(0)) == .claim(limit: 4))
        #expect(machine.claimReturned(started: jobs(1...4), unreadable: [], now: at(0)) == .claim(limit: 4))
        #expect(machine.claimReturned(started: jobs(5...8), unreadable: [], now: at(0.001)) == .waitForWakeUp)
        _ = machine.handlerReturned(key(1))
        #expect(machine.wakeUp(now: at(0.002)) == .claim(limit: 1), "1 free of 8, but the last claim had no keyed job")
        #expect(machine.claimReturned(started: jobs(9...9), unreadable: [], keys: 3, now: at(0.003)) == .waitForWakeUp)
        _ = machine.handlerReturned(key(2))
        #expect(machine.wakeUp(now: at(0.004)) == .claim(limit: 1), "1 free of 8, but the last claim had 3 keys of 4")
        #expect(
            machine.claimReturned(started: jobs(10...10), unreadable: [], keys: 4, now: at(0.005)) == .waitForWakeUp)
        _ = machine.handlerReturned(key(3))
        #expect(machine.wakeUp(now: at(0.006)) == .gather(until: at(0.054)), "the last claim was full, of 4 keys")
    }
}
