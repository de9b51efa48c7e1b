import Foundation
@testable import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// The moves a session of the keyed-claim search can make: each runs the queue's own statements.
extension ClaimStress {
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
        let serial = openClaimWindow()
        let worker = "w\(session.index)#\(serial)/" + keyed.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        let inTransaction = session.inTransaction
        if inTransaction && !session.claiming { session.claimedWithOutcomes = true }
        run(
            session, statements.claimJobs,
            [
                PQArray(kinds), batch, worker, PQInterval(lease), PQArray(keyed.map(\.key)),
                PQArray(keyed.map(\.value)),
            ]
        ) { outcome in
            self.closeClaimWindow(serial)
            guard case .rows(let result) = outcome else { return }
            for row in result.rows {
                guard let id: Int64 = try? row.decode("id"),
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
}
