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
        let steps = Self.environment["STRESS_STEPS"].flatMap { Int($0) } ?? 1_500
        try await withQueueDatabase { database in
            var failures: [String] = []
            var totals = ClaimStress.Totals()
            for seed in Self.seeds {
                try await database.script(
                    "TRUNCATE \(database.schema).jobs, \(database.schema).concurrency_keys, "
                        + "\(database.schema).concurrency_key_wakeups, \(database.schema).paused_kinds, "
                        + "\(database.schema).dead_letter_jobs, \(database.schema).job_attempts")
                let stress = try await ClaimStress(database: database, seed: seed)
                let found = try await stress.run(steps: steps)
                totals.add(stress.totals)
                await stress.close()
                if let found {
                    failures.append("seed \(seed): \(found)")
                    print("keyed claim stress: seed \(seed) FAILED: \(found) (rerun with STRESS_SEED=\(seed))")
                }
            }
            print("keyed claim stress: \(Self.seeds.count) seeds × \(steps) steps, \(totals)")
            #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
            // The search must have exercised what it claims to: claims that found a full key,
            // transactions left open and crashed, statements that waited on another session.
            #expect(totals.claimed > 0 && totals.blocked > 0 && totals.crashes > 0 && totals.quiescences > 0)
        }
    }
}

/// A seeded generator (SplitMix64): the same seed draws the same interleaving.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
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
        // Deadlocks are legitimate here (the search mixes claims and completions in one open
        // transaction, which no replica does); find them quickly.
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
        // move of the other family becomes one of this family's.
        if session.inTransaction, roll < 70 {
            let isClaim = roll >= 10 && roll < 30
            if session.claiming != isClaim { roll = session.claiming ? 20 : 40 }
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
        session.aborted = false
    }

    // MARK: Statements

    /// Starts a statement on `session` in a task of its own; `then` runs on the driver when it ends.
    func run(
        _ session: Session, _ query: PQQuery, _ bindings: [any PQEncodable] = [],
        then: @escaping (Outcome) -> Void
    ) {
        let connection = session.connection
        let label =
            query.name.isEmpty ? String(query.sql.prefix(40)).replacingOccurrences(of: "\n", with: " ") : query.name
        let values = bindings.map { $0.postgresText ?? "NULL" }
        note("s\(session.index)\(session.inTransaction ? "*" : "") \(label) \(values)")
        let done = Flag()
        let task = Task<Outcome, Never> {
            defer { done.set() }
            do {
                return .rows(try await connection.query(query, bindings))
            } catch let error as PQError {
                return .failed(error)
            } catch {
                return .failed(PQError(code: .client, message: "\(error)"))
            }
        }
        session.running = (task, done, then)
    }

    /// A one-off statement (not prepared).
    func run(
        _ session: Session, _ sql: String, _ bindings: [any PQEncodable] = [],
        then: @escaping (Outcome) -> Void
    ) {
        run(session, PQQuery("", sql), bindings, then: then)
    }

    /// Waits until `session`'s statement ends, or waits on a lock that only idle sessions hold
    /// (their next moves decide when it runs). A statement waiting on a busy session waits on:
    /// that one ends, or the two deadlock and PostgreSQL ends one. Waiting for that, instead of
    /// moving on, keeps a seed's interleaving the same from run to run.
    func settle(_ session: Session) async throws {
        var polls = 0
        defer { if session.running != nil { note("  s\(session.index) waits") } }
        while let running = session.running {
            if running.done.isSet {
                try await complete(session)
                return
            }
            polls += 1
            if polls > 3, try await isBlockedByIdleSessions(session) {
                totals.blocked += 1
                return
            }
            if polls > 20_000 {
                failure = "a statement of session \(session.index) neither ended nor waited on a lock for 20 s"
                return
            }
            try await Task.sleep(for: .microseconds(polls < 20 ? 200 : 1_000))
        }
    }

    /// Settles every session with a statement under way (after a move that may have freed them).
    func settleAll() async throws {
        for session in sessions where session.running != nil { try await settle(session) }
    }

    /// True when `session` waits on a lock, and so does every session it waits on, down to
    /// sessions that are idle: nothing moves until the driver moves one of those.
    func isBlockedByIdleSessions(_ session: Session) async throws -> Bool {
        let result = try await control.query(
            PQQuery(
                "blockers", "SELECT pid, pg_blocking_pids(pid)::text AS pids FROM unnest($1::int[]) AS pid"),
            [PQArray(sessions.map { Int($0.pid) })])
        var blockers: [Int32: [Int32]] = [:]
        for row in result.rows {
            let text: String = try row.decode("pids")
            blockers[try row.decode("pid")] = text.trimmingCharacters(in: CharacterSet(charactersIn: "{}"))
                .split(separator: ",").compactMap { Int32($0) }
        }
        var resting = Set(sessions.filter { $0.running == nil || $0.running!.done.isSet }.map(\.pid))
        var changed = true
        while changed {
            changed = false
            for other in sessions where !resting.contains(other.pid) {
                let waits = blockers[other.pid] ?? []
                if !waits.isEmpty, waits.allSatisfy({ resting.contains($0) }) {
                    resting.insert(other.pid)
                    changed = true
                }
            }
        }
        return resting.contains(session.pid)
    }

    func note(_ line: String) {
        trace.append(line)
        if trace.count > 80 { trace.removeFirst(trace.count - 80) }
    }

    /// Handles a finished statement's outcome.
    func complete(_ session: Session) async throws {
        guard let running = session.running else { return }
        let outcome = await running.task.value
        session.running = nil
        switch outcome {
        case .rows(let result):
            let ids =
                result.columns.contains("id") ? result.rows.compactMap { try? $0.decode("id", as: Int64.self) } : []
            note("  s\(session.index) done: \(result.count) rows \(ids)")
        case .failed(let error): note("  s\(session.index) failed: \(error)")
        }
        if case .failed(let error) = outcome {
            switch error.sqlState {
            case "40P01":
                totals.deadlocks += 1
            case _ where error.code == .connectionLost:
                break
            default:
                failure = "session \(session.index): unexpected error \(error)"
            }
            if session.inTransaction { session.aborted = true }
        }
        running.then(outcome)
    }

    /// Every session whose statement was waiting may have moved on: settle them all.
    func settleWaiting() async throws {
        for session in sessions where session.running != nil {
            if session.running!.done.isSet { try await complete(session) }
        }
    }

    func waitForAny() async throws {
        for _ in 0..<20_000 {
            try await settleWaiting()
            if sessions.contains(where: { $0.running == nil }) { return }
            try await Task.sleep(for: .milliseconds(1))
        }
        failure = "every session waited on a lock for 20 s"
    }

    // MARK: Moves

    func insert(_ session: Session) async throws {
        let count = Int.random(in: 1...2, using: &random)
        var kinds: [String] = []
        var keys: [String] = []
        var priorities: [Int] = []
        var delays: [Int] = []
        for _ in 0..<count {
            kinds.append(pick(Self.kinds))
            keys.append(pick(Self.keys))
            priorities.append(Int.random(in: 0...1, using: &random))
            // Mostly due now or in the past; a few an hour out.
            delays.append(chance(8) ? 3_600 : -Int.random(in: 0...5, using: &random))
        }
        run(
            session,
            """
            INSERT INTO \(schema).jobs (kind, concurrency_key, priority, run_at)
            SELECT k, c, p::smallint, now() + make_interval(secs => d)
            FROM unnest($1::text[], $2::text[], $3::int[], $4::int[]) AS t(k, c, p, d)
            """,
            [PQArray(kinds), PQArray(keys), PQArray(priorities), PQArray(delays)]
        ) { _ in }
        try await settle(session)
    }

    func claim(_ session: Session) async throws {
        let kinds = chance(80) ? Self.kinds : [pick(Self.kinds)]
        let limits = self.limits
        let keyed = limits.sorted { $0.key < $1.key }
        let batch = Int.random(in: 1...4, using: &random)
        // Now and then a lease that is over at once, for the reaper to take back.
        let lease: Duration = chance(5) ? .zero : .seconds(3600)
        // The worker's name carries the limits the claim ran under: a running job's `locked_by` then
        // tells the check which limit its claim obeyed, whether or not the driver has read the
        // claim's result yet.
        let worker = "w\(session.index)/" + keyed.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        let inTransaction = session.inTransaction
        run(
            session, statements.claimJobs,
            [
                PQArray(kinds), batch, worker, PQInterval(lease), PQArray(keyed.map(\.key)),
                PQArray(keyed.map(\.value)),
            ]
        ) { outcome in
            guard case .rows(let result) = outcome else { return }
            for row in result.rows {
                guard let id: Int64 = try? row.decode("id"), let kind: String = try? row.decode("kind"),
                    let attempt: Int = try? row.decode("attempt")
                else { continue }
                self.totals.claimed += 1
                if inTransaction { session.claimedHere.append((id, attempt, worker)) }
            }
        }
        try await settle(session)
    }

    enum Finish { case complete, retry, release, deadLetter }

    /// Ends a running job the way a replica's Finisher does, as the replica that holds it: one
    /// committed by anyone, or one this session's open transaction claimed.
    func finish(_ session: Session, how: Finish) async throws {
        var candidates = session.claimedHere
        let committed = try await control.query(
            PQQuery(
                "running", "SELECT id, attempt, locked_by FROM \(schema).jobs WHERE state = 'running' ORDER BY id"))
        for row in committed.rows {
            candidates.append((try row.decode("id"), try row.decode("attempt"), try row.decode("locked_by")))
        }
        guard !candidates.isEmpty else {
            return session.inTransaction ? try await insert(session) : try await claim(session)
        }
        let job = pick(candidates)
        let ids = PQArray([job.id])
        let attempts = PQArray([job.attempt])
        let ago = PQArray([PQInterval(.zero)])
        let wait = PQArray([PQInterval(chance(20) ? .seconds(3600) : .zero)])
        let error = PQArray(["stress"])
        switch how {
        case .complete:
            run(session, statements.completeJobs, [ids, attempts, job.worker, ago]) { _ in }
        case .retry:
            run(session, statements.retryJobs, [ids, attempts, job.worker, ago, error, wait]) { _ in }
        case .release:
            run(
                session, statements.releaseJobs,
                [ids, attempts, job.worker, ago, error, PQArray([NullBinding()])]
            ) { _ in }
        case .deadLetter:
            run(
                session, statements.deadLetterJobs,
                [ids, attempts, job.worker, ago, error, PQArray(["attempts_exhausted"]), PQArray([3])]
            ) { _ in }
        }
        session.claimedHere.removeAll { $0.id == job.id }
        try await settle(session)
    }

    func reap(_ session: Session) async throws {
        run(session, statements.reapExpiredLeases, [25, 100]) { _ in }
        try await settle(session)
    }

    /// A DBA (or a cancel) deleting a waiting job.
    func deleteWaiting(_ session: Session) async throws {
        run(
            session,
            """
            DELETE FROM \(schema).jobs WHERE id = (
                SELECT id FROM \(schema).jobs WHERE state = 'available' ORDER BY random() LIMIT 1)
            """
        ) { _ in }
        try await settle(session)
    }

    func pause(_ session: Session) async throws {
        let kind = pick(Self.kinds)
        if chance(50) {
            run(session, "INSERT INTO \(schema).paused_kinds (kind) VALUES ($1) ON CONFLICT DO NOTHING", [kind]) { _ in
            }
        } else {
            run(session, "DELETE FROM \(schema).paused_kinds WHERE kind = $1", [kind]) { _ in }
        }
        try await settle(session)
    }

    /// The connection drops in the middle of its transaction.
    func crash(_ session: Session) async throws {
        totals.crashes += 1
        // With a timeout, pg_terminate_backend waits for the backend to be gone, its transaction
        // rolled back: without one it returns at once, and the next moves (a quiescence check
        // among them) would meet the locks and invisible rows of a transaction still ending.
        _ = try await control.query(
            PQQuery("terminate", "SELECT pg_terminate_backend($1, 20000)"), [Int(session.pid)])
        if let running = session.running { _ = await running.task.value }
        session.running = nil
        await session.connection.close()
        let fresh = try await Self.open(database, index: session.index)
        session.connection = fresh.connection
        session.pid = fresh.pid
        ended(session, committed: false)
        try await settleWaiting()
    }

    // MARK: Checks

    /// No key runs more jobs than the largest limit among the claims that took its running jobs
    /// (read from `locked_by`, which names the limits its claim ran under).
    func checkLimits() async throws {
        try await settleWaiting()
        let result = try await control.query(
            PQQuery(
                "runningByKey",
                """
                SELECT kind, concurrency_key, array_agg(id ORDER BY id)::text AS ids,
                       string_agg(locked_by, ' ' ORDER BY id) AS workers
                FROM \(schema).jobs
                WHERE state = 'running' AND concurrency_key IS NOT NULL
                GROUP BY kind, concurrency_key
                """))
        for row in result.rows {
            let kind: String = try row.decode("kind")
            let ids: String = try row.decode("ids")
            let workers = try row.decode("workers", as: String.self).split(separator: " ").map(String.init)
            let bound = workers.map { Self.limit(of: kind, claimedBy: $0) }.max() ?? 0
            if workers.count > bound {
                let key: String = try row.decode("concurrency_key")
                failure =
                    "key \(kind)/\(key) runs \(workers.count) jobs \(ids), above every limit it was claimed "
                    + "under (at most \(bound): \(workers))"
                return
            }
        }
    }

    /// No key is parked while it has room: a parked row (head 'infinity', head_id the limit it
    /// was parked under) of a key with waiting jobs, fewer running jobs than that limit and the
    /// kind's limit now, and no wake-up left to fold for it, would wait for a new job of its key
    /// to arrive. Everything is read in one snapshot: a claim that parked a row has committed
    /// the jobs it took, and a job that stopped running has committed its wake-up.
    func checkParked() async throws {
        let result = try await control.query(
            PQQuery(
                "parkedWithRoom",
                """
                SELECT c.kind, c.concurrency_key, c.priority, c.head_id,
                       (SELECT count(*) FROM \(schema).jobs j
                        WHERE j.kind = c.kind AND j.concurrency_key = c.concurrency_key
                          AND j.state = 'running') AS running
                FROM \(schema).concurrency_keys c
                WHERE c.head_run_at = 'infinity'
                  AND NOT EXISTS (SELECT 1 FROM \(schema).concurrency_key_wakeups w
                                  WHERE w.kind = c.kind AND w.concurrency_key = c.concurrency_key)
                  AND EXISTS (SELECT 1 FROM \(schema).jobs j
                              WHERE j.kind = c.kind AND j.concurrency_key = c.concurrency_key
                                AND j.priority = c.priority AND j.state = 'available')
                """))
        for row in result.rows {
            let kind: String = try row.decode("kind")
            let running: Int = try row.decode("running")
            let parkedUnder: Int64 = try row.decode("head_id")
            let room = min(Int(clamping: parkedUnder), limits[kind, default: Int.max])
            if running < room {
                let key: String = try row.decode("concurrency_key")
                let priority: Int = try row.decode("priority")
                failure =
                    "key \(kind)/\(key) (priority \(priority)) is parked with \(running) running jobs, below its "
                    + "limit \(room), and no wake-up is left for it: stranded until a new job of the key arrives"
                return
            }
        }
    }

    /// The limit of `kind` that a claim by `worker` (`w<session>/a=2,b=1`) ran under.
    static func limit(of kind: String, claimedBy worker: String) -> Int {
        guard let limits = worker.split(separator: "/").last else { return 0 }
        for pair in limits.split(separator: ",") {
            let parts = pair.split(separator: "=")
            if parts.count == 2, parts[0] == kind { return Int(parts[1]) ?? 0 }
        }
        return Int.max
    }

    /// Ends every transaction, then checks that the next claim takes a job of every key that has
    /// a due waiting job and a free slot.
    func quiesce() async throws {
        totals.quiescences += 1
        // End every transaction; a statement that waited on one may then run and leave its own
        // transaction open, so go round until every session rests.
        for _ in 0..<50 {
            for session in sessions where session.running != nil { try await settle(session) }
            for session in sessions where session.inTransaction && session.running == nil {
                let commit = !session.aborted && chance(70)
                run(session, commit ? "COMMIT" : "ROLLBACK") { _ in self.ended(session, committed: commit) }
                try await settle(session)
            }
            try await settleWaiting()
            if !sessions.contains(where: { $0.running != nil || $0.inTransaction }) { break }
            try await Task.sleep(for: .milliseconds(2))
        }
        guard !sessions.contains(where: { $0.running != nil || $0.inTransaction }) else {
            if failure == nil { failure = "sessions did not come to rest" }
            return
        }
        if failure != nil { return }
        try await control.execute(script: "DELETE FROM \(schema).paused_kinds", name: "resumeAll")
        let due = try await control.query(
            PQQuery(
                "claimableKeys",
                """
                SELECT j.kind, j.concurrency_key,
                       count(*) FILTER (WHERE j.state = 'running') AS running,
                       count(*) FILTER (WHERE j.state = 'available' AND j.run_at <= now()) AS waiting,
                       (SELECT min(c.head_id) FROM \(schema).concurrency_keys c
                        WHERE c.kind = j.kind AND c.concurrency_key = j.concurrency_key
                          AND c.head_run_at = 'infinity') AS parked_under
                FROM \(schema).jobs j WHERE j.concurrency_key IS NOT NULL
                GROUP BY j.kind, j.concurrency_key
                """))
        var expected: Set<String> = []
        for row in due.rows {
            let kind: String = try row.decode("kind")
            let running: Int = try row.decode("running")
            let waiting: Int = try row.decode("waiting")
            // A key parked under a lower limit than its kind's now waits for one of its running
            // jobs to end (or for the reconciler): it has as many running as that limit.
            let parkedUnder = try row.decodeIfPresent("parked_under", as: Int.self) ?? Int.max
            if waiting > 0, running < min(limits[kind, default: Int.max], parkedUnder) {
                expected.insert("\(kind)/\(try row.decode("concurrency_key", as: String.self))")
            }
        }
        let keyed = limits.sorted { $0.key < $1.key }
        let claimed = try await control.query(
            statements.claimJobs,
            [
                PQArray(Self.kinds), 1_000,
                "quiescence/" + keyed.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
                PQInterval(.seconds(3600)),
                PQArray(keyed.map(\.key)), PQArray(keyed.map(\.value)),
            ])
        var got: Set<String> = []
        for row in claimed.rows {
            let kind: String = try row.decode("kind")
            got.insert("\(kind)/\(try row.decode("concurrency_key", as: String.self))")
        }
        let stranded = expected.subtracting(got)
        if !stranded.isEmpty {
            let keys = try await control.query(
                PQQuery(
                    "keyRows",
                    "SELECT kind, concurrency_key, priority, head_run_at::text AS head FROM \(schema).concurrency_keys")
            )
            let rows = try keys.rows.map {
                "\(try $0.decode("kind", as: String.self))/\(try $0.decode("concurrency_key", as: String.self))"
                    + " p\(try $0.decode("priority", as: Int.self)) \(try $0.decode("head", as: String.self))"
            }
            let found =
                "stranded: \(stranded.sorted()) have a due waiting job and a free slot, but the next claim "
                + "took none of them (key rows: \(rows))"
            if KeyedClaimStressTests.environment["STRESS_STRICT"] != nil {
                failure = found
            } else if try await mendedByReconciler(stranded, keyed: keyed) {
                // The product's promise holds (the reconciler turns the race into a delay); the
                // race is still a finding: print it, and `make chaos` (strict) fails on it.
                totals.mended += stranded.count
                print("keyed claim stress: seed \(seed): \(found); mended by the reconciler (STRESS_STRICT=1 fails)")
            } else {
                failure = found + ", and the reconciler did not mend them"
            }
        }
        try await checkLimits()
    }

    /// Runs the reconciler's statement as a replica would, then a claim: true when it takes a job
    /// of every key in `stranded`.
    func mendedByReconciler(_ stranded: Set<String>, keyed: [(key: String, value: Int)]) async throws -> Bool {
        _ = try await control.query(
            PQQuery("", "SELECT * FROM \(schema).repair_concurrency_keys($1, $2, $3)"),
            [PQArray(Self.kinds), PQArray(keyed.map(\.key)), PQArray(keyed.map(\.value))])
        let claimed = try await control.query(
            statements.claimJobs,
            [
                PQArray(Self.kinds), 1_000,
                "reconciled/" + keyed.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
                PQInterval(.seconds(3600)), PQArray(keyed.map(\.key)), PQArray(keyed.map(\.value)),
            ])
        let got = Set(
            try claimed.rows.map {
                "\(try $0.decode("kind", as: String.self))/\(try $0.decode("concurrency_key", as: String.self))"
            })
        return stranded.isSubset(of: got)
    }
}

/// SQL NULL.
struct NullBinding: PQEncodable {
    var postgresText: String? { nil }
}
