import Foundation
@testable import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// The keyed claim takes the first jobs in queue order (priority, run_at, id) across keys, up to
/// its batch, once it has more candidates than it can take and fetches each further key only up
/// to the cut (sql/job_queue/023: the jobs due before the cut's run_at, then those at its run_at
/// with a lower id).
@Suite("Keyed claim order", .timeLimit(.minutes(2)))
struct ClaimOrderTests {
    @Test("past its cut a claim takes the first jobs by run_at, then id, across keys; ties of run_at too")
    func firstJobsAcrossKeysPastTheCut() async throws {
        try await withQueueDatabase { database in
            let schema = database.schema
            // Two statements, so two run_at values, each shared by its statement's rows: 4 keys
            // of 5 jobs, then the same 4 keys of 30, ids interleaved across the keys.
            for perKey in [5, 30] {
                try await database.query(
                    """
                    INSERT INTO \(schema).jobs (kind, concurrency_key)
                    SELECT 'test.job', 'k' || (g % 4) FROM generate_series(0, \(4 * perKey - 1)) g ORDER BY g
                    """)
            }
            let connection = try await database.connect()
            let claim = JobStore(workerID: "w", schema: database.queue).claimStatement(
                kinds: ["test.job"], keyLimits: ["test.job": 100], limit: 40, lease: .seconds(60))
            // Each claim takes 40 (a key may run 100): the first two keys visited overfill the
            // batch, and the later ones are fetched up to the cut, in the first claim across
            // both run_at values.
            for round in 1...3 {
                let expected = try await database.query(
                    "SELECT id FROM \(schema).jobs WHERE state = 'available' ORDER BY run_at, id LIMIT 40"
                ).rows.map { try $0.decode("id", as: Int64.self) }
                let claimed = try await connection.query(claim.query, claim.bindings).rows.map {
                    try $0.decode("id", as: Int64.self)
                }
                #expect(claimed.sorted() == expected, "claim \(round)")
            }
            #expect(try await database.count("SELECT count(*) FROM \(schema).jobs WHERE state = 'available'") == 20)
            await connection.close()
        }
    }
}
