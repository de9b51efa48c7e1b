import Foundation
@testable import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// A search, not an example: several sessions run the queue's own statements (claims,
/// completions, retries, releases, dead letters, reaping, inserts, deletes, pauses) in random
/// interleavings, some of them inside transactions left open across other sessions' steps, some
/// ended by a dropped connection, while the per-kind key limits change. After every step no key
/// may have more running jobs than the limit of a claim that took one of them; at quiescence
/// (every transaction ended) every key with a due waiting job and a free slot must be claimable
/// by the next claim.
///
/// Each seed is repeatable: the interleaving is drawn from it, and a statement that waits on a
/// lock is left waiting until its blocker moves (found with `pg_blocking_pids`), as PostgreSQL's
/// isolation tester does. A failure names its seed; `STRESS_SEED=<seed>` runs that seed alone.
/// `STRESS_SEEDS` (how many seeds, default 16) and `STRESS_STEPS` (steps per seed, default
/// 1,500) make longer runs (`make chaos` runs one).
@Suite("Keyed claim under random interleavings", .timeLimit(.minutes(10)))
struct KeyedClaimStressTests {
    static let environment = ProcessInfo.processInfo.environment

    static var seeds: [UInt64] {
        if let seed = environment["STRESS_SEED"].flatMap({ UInt64($0) }) { return [seed] }
        let count = environment["STRESS_SEEDS"].flatMap { Int($0) } ?? 16
        // Half fixed (they found the stranded key of issue 20 before its fix), half new each run.
        let fixed: [UInt64] = [1, 2, 3, 4, 5, 6]
        let fresh = (0..<max(count - fixed.count, 0)).map { _ in UInt64.random(in: 1..<1_000_000_000) }
        return Array((fixed + fresh).prefix(count))
    }

    @Test("no key overfills and none is stranded")
    func interleavings() async throws {
        try await Self.search(seeds: Self.seeds, changingKeyLimits: false)
    }

    /// The same search while the driver also gives single keys limits of their own, raises,
    /// lowers and removes them (`set_concurrency_key_limit`, committed at once), beside the
    /// kinds' limits changing. A claim may read a key's limit at any moment of its statement, so
    /// a key's running jobs are checked against the largest limit it had while a claim that took
    /// one of them ran. `STRESS_KEY_LIMIT_SEEDS` (default 8) sets how many seeds.
    @Test("no key overfills and none is stranded while single keys' limits change")
    func interleavingsWithKeyLimits() async throws {
        let count = Self.environment["STRESS_KEY_LIMIT_SEEDS"].flatMap { Int($0) } ?? 8
        let fixed: [UInt64] = [11, 12, 13]
        let fresh = (0..<max(count - fixed.count, 0)).map { _ in UInt64.random(in: 1..<1_000_000_000) }
        let seeds = Self.environment["STRESS_SEED"] != nil ? Self.seeds : Array((fixed + fresh).prefix(count))
        try await Self.search(seeds: seeds, changingKeyLimits: true)
    }

    /// The same search with ordered keys (`set_concurrency_key_ordered`, sql/job_queue/018): `a/k1`
    /// and `b/k2` are ordered, and single keys' limits change too. Beside the checks above: an
    /// ordered key never runs two jobs, never runs a job while an older one of its key that was
    /// committed before the claim began is waiting, and at quiescence the next claim takes its
    /// oldest job whenever that is due and nothing of the key runs. `STRESS_ORDERED_SEEDS`
    /// (default 6) sets how many seeds.
    @Test("ordered keys run one job at a time, oldest first, and are never stranded")
    func interleavingsWithOrderedKeys() async throws {
        let count = Self.environment["STRESS_ORDERED_SEEDS"].flatMap { Int($0) } ?? 6
        let fixed: [UInt64] = [21, 22, 23]
        let fresh = (0..<max(count - fixed.count, 0)).map { _ in UInt64.random(in: 1..<1_000_000_000) }
        let seeds = Self.environment["STRESS_SEED"] != nil ? Self.seeds : Array((fixed + fresh).prefix(count))
        try await Self.search(seeds: seeds, changingKeyLimits: true, ordered: true)
    }

    static func search(seeds: [UInt64], changingKeyLimits: Bool, ordered: Bool = false) async throws {
        let steps = Self.environment["STRESS_STEPS"].flatMap { Int($0) } ?? 1_500
        try await withQueueDatabase { database in
            var failures: [String] = []
            var totals = ClaimStress.Totals()
            for seed in seeds {
                try await database.script(
                    "TRUNCATE \(database.schema).jobs, \(database.schema).concurrency_keys, "
                        + "\(database.schema).concurrency_key_wakeups, \(database.schema).paused_kinds, "
                        + "\(database.schema).dead_letter_jobs, \(database.schema).job_attempts, "
                        + "\(database.schema).concurrency_key_limits")
                let stress = try await ClaimStress(database: database, seed: seed)
                stress.changesKeyLimits = changingKeyLimits
                if ordered { try await stress.orderKeys(["a/k1", "b/k2"]) }
                let found = try await stress.run(steps: steps)
                totals.add(stress.totals)
                await stress.close()
                if let found {
                    failures.append("seed \(seed): \(found)")
                    print("keyed claim stress: seed \(seed) FAILED: \(found) (rerun with STRESS_SEED=\(seed))")
                }
            }
            let variant =
                (changingKeyLimits ? " (keys' own limits changing)" : "") + (ordered ? " (ordered keys)" : "")
            print("keyed claim stress\(variant): \(seeds.count) seeds × \(steps) steps, \(totals)")
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
            // The search must have exercised what it claims to: claims that found a full key,
            // transactions left open and crashed, statements that waited on another session.
            #expect(totals.claimed > 0 && totals.blocked > 0 && totals.crashes > 0 && totals.quiescences > 0)
        }
    }
}

/// One run of the search: the sessions, the driver's model of what is committed, and the checks.
final class ClaimStress {
    struct Totals: CustomStringConvertible {
        var steps = 0
        var claimed = 0
        var blocked = 0
        var crashes = 0
        var deadlocks = 0
        var quiescences = 0
        /// Keys found stranded at quiescence and mended by the reconciler (not strict runs only).
        var mended = 0
        mutating func add(_ other: Totals) {
            steps += other.steps
            claimed += other.claimed
            blocked += other.blocked
            crashes += other.crashes
            deadlocks += other.deadlocks
            quiescences += other.quiescences
            mended += other.mended
        }
        var description: String {
            "\(steps) steps, \(claimed) jobs claimed, \(blocked) waits on a lock, \(crashes) dropped connections, "
                + "\(deadlocks) deadlocks, \(quiescences) quiescence checks, \(mended) stranded keys mended by the "
                + "reconciler"
        }
    }

    /// What a statement came back with.
    enum Outcome: Sendable {
        case rows(PQResult)
        case failed(PQError)
    }

    /// A connection and what the driver knows of it.
    final class Session {
        let index: Int
        var connection: PQConnection
        var pid: Int32
        var inTransaction = false
        /// Whether the open transaction is a claim's (it claims only) or a writer's.
        var claiming = false
        /// A writer's open transaction that has claimed, as the Finisher's does last.
        var claimedWithOutcomes = false
        var aborted = false
        /// The statement running now, if any, and what to do with its outcome.
        var running: (task: Task<Outcome, Never>, done: Flag, then: (Outcome) -> Void)?
        /// Jobs this session's open transaction claimed (not yet visible to others), with the
        /// limit of the claim that took them.
        var claimedHere: [(id: Int64, attempt: Int, worker: String)] = []
        init(index: Int, connection: PQConnection, pid: Int32) {
            self.index = index
            self.connection = connection
            self.pid = pid
        }
    }

    let database: TestDatabase
    let seed: UInt64
    let statements: QueueStatements
    let schema: String
    var random: SeededGenerator
    let control: PQConnection
    var sessions: [Session] = []
    var totals = Totals()
    /// Per kind, the key limit that claims pass now; the driver changes it as it goes.
    var limits: [String: Int] = ["a": 1, "b": 2]
    /// Whether the driver also changes single keys' limits (`ClaimStress+KeyLimits.swift`).
    var changesKeyLimits = false
    /// Every change of a key's own limit (`kind/key`, nil: removed), numbered from 1 by `epoch`.
    var keyLimitLog: [(epoch: Int, key: String, value: Int?)] = []
    var keyLimitEpoch = 0
    /// Per claim (its serial, in its worker's name): the key-limit epochs its statement spanned.
    var claimWindows: [Int: (start: Int, end: Int?)] = [:]
    var nextClaim = 0
    /// Ordered keys (`kind/key`, `ClaimStress+Ordered.swift`), the step at which the driver first
    /// saw each of their jobs committed, and the step at which each claim (by serial) began.
    var orderedKeys: Set<String> = []
    var firstSeen: [Int64: Int] = [:]
    var claimStarts: [Int: Int] = [:]
    var failure: String?
    /// The last moves, for the failure's report.
    var trace: [String] = []
    static let kinds = ["a", "b"]
    // Few jobs a key, so that keys often drain and their rows come and go (as a webhook
    // endpoint's do), which is where the claim's bookkeeping has the most to get right.
    static let keys = ["k1", "k2", "k3"]

    init(database: TestDatabase, seed: UInt64) async throws {
        self.database = database
        self.seed = seed
        self.statements = database.queue.statements
        self.schema = database.schema
        self.random = SeededGenerator(seed: seed)
        self.control = try await database.connect()
        for index in 0..<4 { sessions.append(try await Self.open(database, index: index)) }
    }

    static func open(_ database: TestDatabase, index: Int) async throws -> Session {
        let connection = try await database.connect()
        // Deadlocks are legitimate here (the search keeps transactions open across other
        // sessions' steps, and mixes claims and completions in orders no replica runs); find
        // them quickly.
        try? await connection.execute(script: "SET deadlock_timeout = '20ms'", name: "deadlockTimeout")
        let pid: Int32 = try await connection.query(PQQuery("pid", "SELECT pg_backend_pid() AS pid"))
            .first!.decode("pid")
        return Session(index: index, connection: connection, pid: pid)
    }

    /// Ends every session, waiting statements included (their blockers may be open transactions).
    func close() async {
        for session in sessions {
            _ = try? await control.query(
                PQQuery("terminate", "SELECT pg_terminate_backend($1)"), [Int(session.pid)])
        }
        for session in sessions {
            if let running = session.running { _ = await running.task.value }
            await session.connection.close()
        }
        await control.close()
    }

    func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &random) < percent }
    func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &random)] }

    // MARK: The run

    /// Runs `steps` steps with a quiescence check every 250 and at the end; returns what failed.
    func run(steps: Int) async throws -> String? {
        for step in 1...steps {
            totals.steps += 1
            try await self.step()
            if failure == nil { try await settleAll() }
            if failure == nil { try await checkLimits() }
            if failure == nil { try await checkParked() }
            if failure == nil, !orderedKeys.isEmpty { try await checkOrder() }
            if failure == nil, step % 250 == 0 || step == steps { try await quiesce() }
            if let failure {
                if KeyedClaimStressTests.environment["STRESS_TRACE"] != nil {
                    print("last moves of seed \(seed):\n" + trace.joined(separator: "\n"))
                }
                return "step \(step): \(failure)"
            }
        }
        return nil
    }

    func step() async throws {
        // A driver's move: change a kind's limit, pause or resume a kind; else a session's.
        if KeyedClaimStressTests.environment["STRESS_FIXED_LIMITS"] == nil, chance(3) {
            limits[pick(Self.kinds)] = Int.random(in: 1...3, using: &random)
            return
        }
        if changesKeyLimits, chance(3) {
            try await changeKeyLimit()
            return
        }
        let idle = sessions.filter { $0.running == nil }
        guard !idle.isEmpty else {
            try await waitForAny()
            return
        }
        let session = pick(idle)
        try await act(session)
    }

    func act(_ session: Session) async throws {
        if session.aborted {
            run(session, "ROLLBACK") { _ in self.ended(session, committed: false) }
            return try await settle(session)
        }
        var roll = Int.random(in: 0..<100, using: &random)
        // A transaction is a replica's claim (claims only, as the worker's claim loop runs them)
        // or a writer's (the Finisher's outcomes, the web app's inserts, the reaper, a DBA); a
        // move of the other family becomes one of this family's, except that a writer's
        // transaction may end with a claim, as the Finisher's does when it claims with the
        // outcomes it writes: then its commit (or a rollback, or a crash) comes next.
        if session.claimedWithOutcomes, roll < 70 || roll >= 88 {
            roll = 70
        } else if session.inTransaction, roll < 70 {
            let isClaim = roll >= 10 && roll < 30
            if session.claiming != isClaim, session.claiming || !chance(50) { roll = session.claiming ? 20 : 40 }
        }
        switch roll {
        case 0..<10: try await insert(session)
        case 10..<30: try await claim(session)
        case 30..<52: try await finish(session, how: .complete)
        case 52..<57: try await finish(session, how: .retry)
        case 57..<61: try await finish(session, how: .release)
        case 61..<64: try await finish(session, how: .deadLetter)
        case 64..<66: try await reap(session)
        case 66..<68: try await deleteWaiting(session)
        case 68..<70: try await pause(session)
        case 70..<80:
            if session.inTransaction {
                run(session, "COMMIT") { _ in self.ended(session, committed: true) }
            } else {
                let claiming = chance(60)
                run(session, "BEGIN") { outcome in
                    if case .rows = outcome {
                        session.inTransaction = true
                        session.claiming = claiming
                    }
                }
            }
            try await settle(session)
        case 80..<85:
            if session.inTransaction {
                run(session, "ROLLBACK") { _ in self.ended(session, committed: false) }
                try await settle(session)
            } else {
                try await claim(session)
            }
        case 85..<88:
            if session.inTransaction { try await crash(session) } else { try await claim(session) }
        default:
            if session.inTransaction && !session.claiming {
                try await finish(session, how: .complete)
            } else {
                try await claim(session)
            }
        }
    }

    /// A transaction ended: what it claimed is committed or gone.
    func ended(_ session: Session, committed: Bool) {
        session.claimedHere = []
        session.inTransaction = false
        session.claiming = false
        session.claimedWithOutcomes = false
        session.aborted = false
    }

}

/// SQL NULL.
struct NullBinding: PQEncodable {
    var postgresText: String? { nil }
}
