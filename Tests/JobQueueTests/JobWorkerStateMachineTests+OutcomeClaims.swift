@testable import JobQueue
@testable import TestSupport
import Testing

/// The slots that keyed jobs pass to the claim in their outcome's transaction.
extension JobWorkerStateMachineTests {
    @Test("a keyed job's slot passes to its outcome's claim: the claim loop sees no free slot until it returns")
    func slotPassesToOutcomeClaim() {
        var machine = machine(concurrency: 2)
        #expect(machine.wakeUp(now: at(0)) == .claim(limit: 2))
        #expect(machine.claimReturned(started: jobs(1...2), unreadable: [], now: at(0)) == .waitForWakeUp)
        #expect(machine.handlerReturned(key(1), holdsSlot: true) == .init(stopped: nil, holdsSlot: true))
        #expect(machine.freeSlots == 0)
        #expect(machine.wakeUp(now: at(1)) == .waitForWakeUp, "the slot is held for the outcome's claim")
        #expect(machine.slotsHeld(by: [key(1), key(2), key(9)]) == 1, "only attempts being written hold slots")
        let accepted = machine.claimedWithOutcomes(freeing: [key(1)], started: jobs(3...3), unreadable: [])
        #expect(accepted)
        #expect(machine.runningCount == 2)
        #expect(machine.heldSlots == 0)
        #expect(machine.slotsHeld(by: [key(1)]) == 0, "the slot went to job 3")
        machine.outcomesRecorded([key(1)])
        #expect(machine.freeSlots == 0, "recording the outcome frees nothing more")
        #expect(machine.heldJobIDs == [2, 3])
    }

    @Test("slots the outcome's claim did not fill go back to the claim loop; so do those of a write that made no claim")
    func leftoverSlotsReturn() {
        var machine = machine(concurrency: 3)
        _ = machine.wakeUp(now: at(0))
        _ = machine.claimReturned(started: jobs(1...3), unreadable: [], now: at(0))
        _ = machine.handlerReturned(key(1), holdsSlot: true)
        _ = machine.handlerReturned(key(2), holdsSlot: true)
        _ = machine.handlerReturned(key(3), holdsSlot: false)
        #expect(machine.freeSlots == 1, "only the unkeyed job's slot is free")
        #expect(machine.slotsHeld(by: [key(1), key(2), key(3)]) == 2)
        // The claim found one job, and one row it could not read: both take a slot.
        let accepted = machine.claimedWithOutcomes(
            freeing: [key(1), key(2), key(3)], started: jobs(4...4), unreadable: [key(5)])
        #expect(accepted)
        #expect(machine.heldSlots == 0)
        #expect(machine.inFlight == 5)
        machine.outcomesRecorded([key(1), key(2), key(3), key(5)])
        #expect(machine.freeSlots == 2)
        #expect(machine.wakeUp(now: at(1)) == .claim(limit: 2))

        var failed = self.machine(concurrency: 2)
        _ = failed.wakeUp(now: at(0))
        _ = failed.claimReturned(started: jobs(1...2), unreadable: [], now: at(0))
        _ = failed.handlerReturned(key(1), holdsSlot: true)
        #expect(failed.freeSlots == 0)
        // The write failed and was retried without a claim: the outcome's record frees the slot.
        failed.outcomesRecorded([key(1)])
        #expect(failed.heldSlots == 0)
        #expect(failed.freeSlots == 1)
    }

    @Test("once a shutdown has begun no slot is held and no claim is made; after the drain the claim is refused")
    func outcomeClaimsAtShutdown() {
        var machine = machine(concurrency: 3, shutdownTimeout: .seconds(10))
        _ = machine.wakeUp(now: at(0))
        _ = machine.claimReturned(started: jobs(1...3), unreadable: [], now: at(0))
        _ = machine.handlerReturned(key(1), holdsSlot: true)
        machine.shutdownRequested()
        #expect(machine.slotsHeld(by: [key(1)]) == 0, "a slot held before the shutdown claims nothing")
        let whileStopping = machine.handlerReturned(key(2), holdsSlot: true)
        #expect(whileStopping == .init(stopped: nil, holdsSlot: false, wakesClaimLoop: true))
        #expect(machine.wakeUp(now: at(1)) == .startDrain(inFlight: 3))
        // A claim sent before the shutdown returns while draining: its jobs run, the drain waits.
        let whileDraining = machine.claimedWithOutcomes(freeing: [key(1)], started: jobs(4...4), unreadable: [])
        #expect(whileDraining)
        #expect(machine.runningCount == 2)
        #expect(machine.wakeUp(now: at(11)) == .finishDrain(cancel: ["job3", "job4"], stopFinisher: nil))
        // One sent before the shutdown and returning after the drain ended is refused: the caller
        // releases its jobs.
        let afterDrain = machine.claimedWithOutcomes(freeing: [key(2)], started: jobs(5...5), unreadable: [key(6)])
        #expect(!afterDrain)
        #expect(machine.runningCount == 2)
        #expect(machine.heldJobIDs == [1, 2, 3, 4])
    }

    @Test("a lease lost while running holds no slot for the outcome")
    func leaseLostHoldsNoSlot() {
        var machine = machine(concurrency: 2)
        _ = machine.wakeUp(now: at(0))
        _ = machine.claimReturned(started: jobs(1...1), unreadable: [], now: at(0))
        _ = machine.leaseLost([1])
        #expect(machine.handlerReturned(key(1), holdsSlot: true) == .init(stopped: .leaseLost, holdsSlot: false))
        #expect(machine.freeSlots == 2)
    }

    /// Random events, thousands of sequences: handlers return holding their slot or not, outcome
    /// claims return with fewer jobs than slots or none, outcomes are recorded before or after,
    /// leases are lost, claims fail, a shutdown comes. After every event the slots add up: what
    /// runs plus what is held never exceeds the concurrency, held slots are never negative, and
    /// every attempt is on the books until its outcome is recorded.
    @Test("seeded: the claim loop and the outcome claims together never exceed the concurrency")
    func seededSlotAccounting() throws {
        for seed in (1...2_000).map({ UInt64($0) &* 0x9E37_79B9 }) {
            var search = SlotSearch(seed: seed, machine: machine(concurrency: 5, claimBatchSize: 3))
            try search.run()
        }
    }
}

/// One seeded sequence of events for ``JobWorkerStateMachineTests/seededSlotAccounting()``.
private struct SlotSearch {
    typealias Machine = JobWorker.StateMachine<String>
    typealias Key = JobWorker.AttemptKey

    let seed: UInt64
    var machine: Machine
    var random: SeededGenerator
    var clock = ContinuousClock.now
    var nextID: Int64 = 1
    var running: [Key] = []
    /// Outcomes submitted, by the batch the finisher would write them in.
    var writing: [Key] = []
    var pendingClaim: Int?

    init(seed: UInt64, machine: Machine) {
        self.seed = seed
        self.machine = machine
        self.random = SeededGenerator(seed: seed)
    }

    mutating func fresh(_ count: Int) -> [Key] {
        defer { nextID += Int64(count) }
        return (0..<count).map { Key(id: nextID + Int64($0), attempt: 1) }
    }

    mutating func check(_ step: Int, _ event: String) throws {
        let concurrency = 5
        let problem: String? =
            if machine.runningCount + machine.heldSlots > concurrency {
                "\(machine.runningCount) running + \(machine.heldSlots) held > \(concurrency)"
            } else if machine.heldSlots < 0 {
                "held slots \(machine.heldSlots)"
            } else if machine.runningCount != running.count {
                "the machine runs \(machine.runningCount), the search \(running.count)"
            } else if machine.inFlight != running.count + writing.count {
                "in flight \(machine.inFlight), the search \(running.count + writing.count)"
            } else {
                nil
            }
        if let problem {
            Issue.record("slot search: seed \(seed), step \(step) (\(event)): \(problem)")
            throw TestFailure(message: "seed \(seed)")
        }
    }

    mutating func run() throws {
        var action = machine.wakeUp(now: clock)
        for step in 0..<200 {
            clock += .milliseconds(10)
            var event = ""
            if case .claim(let limit) = action {
                // The claim loop's claim returns, full or short, or fails.
                if Int.random(in: 0..<10, using: &random) == 0 {
                    action = machine.claimFailed(now: clock)
                    event = "claim failed"
                } else {
                    let started = fresh(Int.random(in: 0...limit, using: &random))
                    running += started
                    action = machine.claimReturned(started: started.map { ($0, "s") }, unreadable: [], now: clock)
                    event = "claim returned \(started.count) of \(limit)"
                }
                try check(step, event)
                continue
            }
            if case .finishDrain = action { return }
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<4 where !running.isEmpty:
                let key = running.remove(at: Int.random(in: 0..<running.count, using: &random))
                _ = machine.handlerReturned(key, holdsSlot: Bool.random(using: &random))
                writing.append(key)
                event = "handler \(key.id) returned"
            case 4..<7 where !writing.isEmpty:
                // The finisher writes a prefix of the outcomes, claiming into their held slots
                // (fewer jobs than slots, or none when the write fails), then records them.
                let batch = Array(writing.prefix(Int.random(in: 1...writing.count, using: &random)))
                writing.removeFirst(batch.count)
                let limit = min(machine.slotsHeld(by: batch), 3)
                let committed = Int.random(in: 0..<5, using: &random) > 0
                let started = committed ? fresh(Int.random(in: 0...limit, using: &random)) : []
                if committed {
                    if machine.claimedWithOutcomes(freeing: batch, started: started.map { ($0, "o") }, unreadable: []) {
                        running += started
                    }
                }
                machine.outcomesRecorded(batch)
                event = "wrote \(batch.count), claimed \(started.count) of \(limit)"
            case 7 where !running.isEmpty:
                let key = running[Int.random(in: 0..<running.count, using: &random)]
                _ = machine.leaseLost([key.id])
                event = "lease of \(key.id) lost"
            case 8 where step > 150 && !machine.isStopping:
                machine.shutdownRequested()
                event = "shutdown"
            default:
                event = "wake-up"
            }
            try check(step, event)
            if case .claiming(.idle) = machine.currentPhase {
                action = machine.wakeUp(now: clock)
            } else if case .draining = machine.currentPhase {
                action = machine.wakeUp(now: clock)
            } else {
                action = .waitForWakeUp
            }
        }
    }
}
