import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// The claim in the outcome's transaction (`claimsWithOutcomes`), against a real database.
@Suite("Claims with outcomes", .timeLimit(.minutes(4)))
struct OutcomeClaimTests {
    /// A key limited to one job at a time: its second job can be claimed only once the first one's
    /// outcome is committed. With the claim in the outcome's transaction, the second job's claim
    /// and the first one's attempt row are written by one transaction: the same `xmin`. Without
    /// it, the claim loop claims after that commit, in a transaction of its own.
    @Test(
        "a key's next job is claimed by the transaction that records its last job's outcome",
        arguments: [true, false])
    func nextJobClaimedWithOutcome(claimsWithOutcomes: Bool) async throws {
        try await withQueueDatabase { database in
            let schema = database.schema
            let ids = try await database.query(
                "INSERT INTO \(schema).jobs (kind, concurrency_key) SELECT 'test.job', 'k' FROM generate_series(1, 2) "
                    + "RETURNING id"
            ).rows.map { try $0.decode("id", as: Int64.self) }.sorted()
            let (first, second) = (ids[0], ids[1])
            let gate = Gate()
            let started = Recorder()
            let handler = ClosureHandler(concurrencyLimit: 1) { job in
                started.record(job)
                if job.id == second { await gate.wait() }
                return .complete
            }
            let worker = RunningWorker(database, handlers: [handler]) {
                $0.claimsWithOutcomes = claimsWithOutcomes
                // No poll while the test looks: the claim loop claims only when woken.
                $0.pollInterval = .seconds(600)
            }
            #expect(await eventually { started.calls(second) == 1 })
            let sameTransaction = try await database.scalar(
                """
                SELECT (SELECT xmin::text FROM \(schema).jobs WHERE id = $2 AND state = 'running')
                     = (SELECT xmin::text FROM \(schema).job_attempts WHERE job_id = $1) AS same
                """, [first, second], as: Bool.self)
            #expect(sameTransaction == claimsWithOutcomes)
            #expect(started.calls(first) == 1)
            gate.open()
            #expect(try await eventually { try await database.count("SELECT count(*) FROM \(schema).jobs") == 0 })
            try await worker.stop()
        }
    }

    /// Three replicas, keys limited to 2, jobs that complete, retry once or snooze once: no key
    /// ever runs more than its limit, and every job ends exactly once, with the claims in outcome
    /// transactions and without.
    @Test("three replicas keep every key within its limit, and every job ends once", arguments: [true, false])
    func replicasKeepLimits(claimsWithOutcomes: Bool) async throws {
        try await withQueueDatabase { database in
            let schema = database.schema
            try await database.query(
                """
                INSERT INTO \(schema).jobs (kind, concurrency_key, payload)
                SELECT 'test.job', 'key-' || (n % 5), jsonb_build_object('n', n) FROM generate_series(1, 300) n
                """)
            let counter = KeyConcurrency()
            let recorder = Recorder()
            let handler = ClosureHandler(concurrencyLimit: 2) { job in
                let key = job.concurrencyKey ?? "none"
                counter.enter(key)
                defer { counter.leave(key) }
                recorder.record(job)
                try? await Task.sleep(for: .milliseconds(Int.random(in: 1...5)))
                if job.id % 7 == 0 && job.attempt == 1 { return .retry("once", after: .milliseconds(10)) }
                // A snooze spends no attempt: once, by the handler's own count.
                if job.id % 11 == 0 && recorder.calls(job.id) == 1 {
                    return .snooze(.milliseconds(10), reason: "later")
                }
                return .complete
            }
            let drained = try await drainWithWorkers(database, replicas: 3, handlers: [handler]) {
                $0.concurrency = 8
                $0.pollInterval = .milliseconds(200)
                $0.claimsWithOutcomes = claimsWithOutcomes
            }
            #expect(drained)
            let completed = try await database.count(
                "SELECT count(DISTINCT job_id) FROM \(schema).job_attempts WHERE outcome = 'succeeded'")
            #expect(completed == 300)
            let twice = try await database.count(
                """
                SELECT count(*) FROM (SELECT job_id FROM \(schema).job_attempts WHERE outcome = 'succeeded'
                                      GROUP BY job_id HAVING count(*) > 1) d
                """)
            #expect(twice == 0)
            #expect(try await database.count("SELECT count(*) FROM \(schema).dead_letter_jobs") == 0)
        }
    }
}
