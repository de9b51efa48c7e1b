import Foundation
import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing

/// Counts handlers running per concurrency key, and the most ever seen at once.
final class KeyConcurrency: Sendable {
    private let state = Mutex<(now: [String: Int], peak: [String: Int])>(([:], [:]))

    func enter(_ key: String) {
        state.withLock { state in
            state.now[key, default: 0] += 1
            state.peak[key] = max(state.peak[key] ?? 0, state.now[key]!)
        }
    }
    func leave(_ key: String) { state.withLock { $0.now[key, default: 0] -= 1 } }
    var peaks: [String: Int] { state.withLock { $0.peak } }
}

@Suite("Concurrency keys", .timeLimit(.minutes(4)))
struct ConcurrencyKeyTests {
    @Test("two replicas never run more than the limit per key, and every job runs once")
    func limitAcrossReplicas() async throws {
        try await withQueueDatabase { database in
            try await database.query(
                """
                INSERT INTO \(database.schema).jobs (kind, concurrency_key)
                SELECT 'test.job', 'key-' || (n % 4) FROM generate_series(1, 120) n
                """)
            let counter = KeyConcurrency()
            let recorder = Recorder()
            let handler = ClosureHandler(concurrencyLimit: 3) { job in
                let key = job.concurrencyKey ?? "none"
                counter.enter(key)
                recorder.record(job)
                try? await Task.sleep(for: .milliseconds(30))
                counter.leave(key)
                return .complete
            }
            let drained = try await drainWithWorkers(database, replicas: 2, handlers: [handler]) {
                $0.concurrency = 16
                $0.pollInterval = .milliseconds(50)
            }
            #expect(drained)
            #expect(recorder.totalCalls == 120 && recorder.duplicates.isEmpty)
            #expect(counter.peaks.count == 4)
            #expect(counter.peaks.values.allSatisfy { $0 <= 3 }, "\(counter.peaks)")
            #expect(counter.peaks.values.contains(3), "the limit should be reached: \(counter.peaks)")
        }
    }

    @Test("a saturated key's backlog does not hold up other keys or unkeyed jobs queued behind it")
    func saturatedKeyDoesNotBlock() async throws {
        try await withQueueDatabase { database in
            try await database.query(
                """
                INSERT INTO \(database.schema).jobs (kind, concurrency_key, run_at) SELECT 'test.job', 'busy', now() - \
                interval '1 hour' FROM generate_series(1, 2000)
                """
            )
            let gate = Gate()
            let others = Recorder()
            let handler = ClosureHandler(concurrencyLimit: 2) { job in
                if job.concurrencyKey == "busy" {
                    await gate.wait()
                } else {
                    others.record(job)
                }
                return .complete
            }
            let worker = RunningWorker(database, handlers: [handler]) { $0.pollInterval = .milliseconds(50) }
            #expect(await eventually { worker.worker.inFlightCount == 2 })
            try await database.query(
                """
                INSERT INTO \(database.schema).jobs (kind, concurrency_key) SELECT 'test.job', 'quiet-' || n FROM \
                generate_series(1, 10) n
                """
            )
            try await database.query(
                "INSERT INTO \(database.schema).jobs (kind) SELECT 'test.job' FROM generate_series(1, 10)")
            #expect(await eventually(timeout: .seconds(60)) { others.totalCalls == 20 })
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(database.schema).jobs WHERE concurrency_key = 'busy' AND state = 'running'"
                )
                    == 2)
            gate.open()
            try await worker.stop()
        }
    }

    @Test("a paused kind is not claimed until resumed; running jobs finish")
    func pauseAndResume() async throws {
        try await withQueueDatabase { database in
            try await database.query("INSERT INTO \(database.schema).paused_kinds (kind) VALUES ('test.job')")
            try await database.query(
                "INSERT INTO \(database.schema).jobs (kind) SELECT 'test.job' FROM generate_series(1, 5)")
            let recorder = Recorder()
            let worker = RunningWorker(
                database,
                handlers: [
                    ClosureHandler {
                        recorder.record($0); return .complete
                    }
                ]
            ) {
                $0.pollInterval = .milliseconds(100)
            }
            try await Task.sleep(for: .seconds(1))
            #expect(recorder.totalCalls == 0)
            try await database.query("DELETE FROM \(database.schema).paused_kinds WHERE kind = 'test.job'")
            #expect(await eventually(timeout: .seconds(60)) { recorder.totalCalls == 5 })
            try await worker.stop()
        }
    }
}

/// `repair_concurrency_keys` (sql/job_queue/008), the reconciler's statement, on keys broken by
/// hand, and on keys that only look broken while a claim or a wake-up is under way.
@Suite("Concurrency key repair", .timeLimit(.minutes(4)))
struct ConcurrencyKeyRepairTests {
    func repair(_ database: TestDatabase, limit: Int = 2) async throws -> [String] {
        let result = try await database.query(
            """
            SELECT concurrency_key || ':' || was AS mended
            FROM \(database.schema).repair_concurrency_keys('{test.job}', '{test.job}', $1::int[])
            ORDER BY 1
            """, [PQArray([limit])])
        return try result.rows.map { try $0.decode("mended") }
    }

    @Test("missing, late and parked keys are mended; full, pending and future ones are left alone")
    func repairs() async throws {
        try await withQueueDatabase { database in
            let s = database.schema
            try await database.script(
                """
                -- Each key: one due waiting job; 'full' also has two running (its limit).
                INSERT INTO \(s).jobs (kind, concurrency_key, run_at)
                SELECT 'test.job', k, now() - interval '1 minute'
                FROM unnest(ARRAY['missing', 'late', 'parked', 'full', 'pending', 'future']) k;
                UPDATE \(s).jobs SET run_at = now() + interval '1 hour' WHERE concurrency_key = 'future';
                INSERT INTO \(s).jobs (kind, concurrency_key, state, attempt, locked_by, locked_until, attempted_at)
                SELECT 'test.job', 'full', 'running', 1, 'w', now() + interval '1 hour', now()
                FROM generate_series(1, 2);
                DELETE FROM \(s).concurrency_key_wakeups;
                DELETE FROM \(s).concurrency_keys;
                INSERT INTO \(s).concurrency_keys (kind, concurrency_key, priority, head_run_at, head_id) VALUES
                    ('test.job', 'late', 0, now() + interval '1 day', 1),
                    ('test.job', 'parked', 0, 'infinity', 2),
                    ('test.job', 'full', 0, 'infinity', 2),
                    ('test.job', 'pending', 0, 'infinity', 2),
                    ('test.job', 'future', 0, 'infinity', 2);
                -- A slot freed that no claim has folded yet: the next claim sets 'pending' right.
                INSERT INTO \(s).concurrency_key_wakeups (kind, concurrency_key) VALUES ('test.job', 'pending');
                """)
            #expect(try await repair(database) == ["late:late", "missing:missing", "parked:parked"])
            // Mended rows point at their first waiting job; a second pass finds nothing.
            #expect(
                try await database.count(
                    """
                    SELECT count(*) FROM \(s).concurrency_keys c JOIN \(s).jobs j
                      ON j.concurrency_key = c.concurrency_key AND j.state = 'available' AND j.id = c.head_id
                    WHERE c.concurrency_key IN ('missing', 'late', 'parked') AND c.head_run_at = j.run_at
                    """) == 3)
            #expect(try await repair(database) == [])
            // A limit raised above what a parked key was parked under unparks it, as routine.
            #expect(try await repair(database, limit: 3) == ["full:limit_raised"])
        }
    }

    @Test("a key whose row a claim holds is left to that claim")
    func lockedRowIsSkipped() async throws {
        try await withQueueDatabase { database in
            let s = database.schema
            try await database.script(
                """
                INSERT INTO \(s).jobs (kind, concurrency_key) VALUES ('test.job', 'held');
                DELETE FROM \(s).concurrency_key_wakeups;
                INSERT INTO \(s).concurrency_keys (kind, concurrency_key, priority, head_run_at, head_id)
                VALUES ('test.job', 'held', 0, 'infinity', 2);
                """)
            try await database.withConnection { holder in
                try await holder.execute(
                    script: "BEGIN; SELECT * FROM \(s).concurrency_keys FOR UPDATE", name: "hold")
                #expect(try await repair(database) == [])
                try await holder.execute(script: "ROLLBACK", name: "release")
            }
            #expect(try await repair(database) == ["held:parked"])
        }
    }

    @Test("one reconciler at a time: a second caller returns at once with nothing")
    func oneAtATime() async throws {
        try await withQueueDatabase { database in
            let s = database.schema
            try await database.script(
                """
                INSERT INTO \(s).jobs (kind, concurrency_key) VALUES ('test.job', 'k');
                DELETE FROM \(s).concurrency_key_wakeups;
                """)
            try await database.withConnection { first in
                try await first.execute(script: "BEGIN", name: "begin")
                let mended = try await first.query(
                    PQQuery(
                        "", "SELECT count(*) AS n FROM \(s).repair_concurrency_keys('{test.job}', '{test.job}', '{2}')")
                )
                #expect(try mended.first!.decode("n", as: Int.self) == 1)
                #expect(try await repair(database) == [])
                try await first.execute(script: "COMMIT", name: "commit")
            }
        }
    }

    @Test("a worker mends a key broken by hand within its repair interval, and the key's jobs run")
    func workerMends() async throws {
        try await withQueueDatabase { database in
            let s = database.schema
            try await database.script(
                """
                INSERT INTO \(s).jobs (kind, concurrency_key) SELECT 'test.job', 'k' FROM generate_series(1, 3);
                DELETE FROM \(s).concurrency_key_wakeups;
                INSERT INTO \(s).concurrency_keys (kind, concurrency_key, priority, head_run_at, head_id)
                VALUES ('test.job', 'k', 0, 'infinity', 1);
                """)
            let ids = try await database.query("SELECT id FROM \(s).jobs").rows.map {
                try $0.decode("id", as: Int64.self)
            }
            #expect(ids.count == 3)
            let recorder = Recorder()
            let handler = ClosureHandler(concurrencyLimit: 1) { job in
                recorder.record(job)
                return .complete
            }
            let worker = RunningWorker(database, handlers: [handler]) {
                $0.pollInterval = .milliseconds(100)
                $0.keyRepairInterval = .milliseconds(200)
            }
            // The repairer mends the key, and the key's jobs run one by one and are recorded.
            #expect(await worker.worker.testSignals.keysRepaired.wait { $0 > 0 } != nil)
            for id in ids { #expect(await worker.worker.testSignals.recorded.wait { $0.jobID == id } != nil) }
            #expect(recorder.totalCalls == 3)
            try await worker.stop()
        }
    }
}
