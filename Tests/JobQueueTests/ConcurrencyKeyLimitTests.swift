import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// Single keys' own limits (`ConcurrencyKeyLimits`, sql/job_queue/010): held in the database,
/// obeyed by every replica's claim and by the reconciler instead of the kind's limit.
@Suite("Concurrency key limits", .timeLimit(.minutes(4)))
struct ConcurrencyKeyLimitTests {
    @Test("a key's own limit replaces its kind's on two replicas: lower for one key, higher for another")
    func ownLimitsAcrossReplicas() async throws {
        try await withQueueDatabase { database in
            let connection = try await database.connect()
            let limits = ConcurrencyKeyLimits(connection, schema: database.queue)
            try await limits.set(kind: "test.job", concurrencyKey: "narrow", maxRunning: 1)
            try await limits.set(kind: "test.job", concurrencyKey: "wide", maxRunning: 5)
            try await database.query(
                """
                INSERT INTO \(database.schema).jobs (kind, concurrency_key)
                SELECT 'test.job', k FROM generate_series(1, 30) n, unnest(ARRAY['narrow', 'wide', 'plain']) k
                """)
            let counter = KeyConcurrency()
            let handler = ClosureHandler(concurrencyLimit: 2) { job in
                let key = job.concurrencyKey ?? "none"
                counter.enter(key)
                try? await Task.sleep(for: .milliseconds(20))
                counter.leave(key)
                return .complete
            }
            let drained = try await drainWithWorkers(database, replicas: 2, handlers: [handler]) {
                $0.concurrency = 16
                $0.pollInterval = .milliseconds(50)
            }
            await connection.close()
            #expect(drained)
            let peaks = counter.peaks
            #expect(peaks["narrow"] == 1, "\(peaks)")
            #expect(peaks["plain"] == 2, "the kind's limit: \(peaks)")
            #expect((peaks["wide"] ?? 0) > 2 && (peaks["wide"] ?? 0) <= 5, "\(peaks)")
        }
    }

    @Test(
        """
        raising a full key's limit runs more of its jobs at once, with none of them ended; removing it restores \
        the kind's
        """
    )
    func raisingUnparks() async throws {
        try await withQueueDatabase { database in
            let connection = try await database.connect()
            let limits = ConcurrencyKeyLimits(connection, schema: database.queue)
            try await database.query(
                "INSERT INTO \(database.schema).jobs (kind, concurrency_key) "
                    + "SELECT 'test.job', 'k' FROM generate_series(1, 8)"
            )
            let gate = Gate()
            let handler = ClosureHandler(concurrencyLimit: 1) { _ in
                await gate.wait()
                return .complete
            }
            let worker = RunningWorker(database, handlers: [handler]) {
                // A long poll: only the limit's wake-up can start the next jobs in time.
                $0.pollInterval = .seconds(30)
            }
            #expect(await eventually { worker.worker.inFlightCount == 1 })
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(database.schema).concurrency_keys WHERE head_run_at = 'infinity'") == 1,
                "the full key is parked")
            #expect(try await limits.set(kind: "test.job", concurrencyKey: "k", maxRunning: 3) == nil)
            #expect(await eventually(timeout: .seconds(60)) { worker.worker.inFlightCount == 3 })
            #expect(try await limits.list(kind: "test.job").map(\.maxRunning) == [3])
            #expect(try await limits.set(kind: "test.job", concurrencyKey: "k", maxRunning: nil) == 3)
            #expect(try await limits.list(kind: "test.job").isEmpty)
            await #expect(throws: PQError.self) {
                try await limits.set(kind: "test.job", concurrencyKey: "k", maxRunning: -1)
            }
            gate.open()
            let drained = try await eventually(timeout: .seconds(60)) {
                try await database.count("SELECT count(*) FROM \(database.schema).jobs") == 0
            }
            try await worker.stop()
            await connection.close()
            #expect(drained)
        }
    }

    @Test("the reconciler holds a parked key to its own limit, not the kind's")
    func reconcilerUsesOwnLimit() async throws {
        try await withQueueDatabase { database in
            let s = database.schema
            try await database.script(
                """
                INSERT INTO \(s).jobs (kind, concurrency_key, run_at)
                SELECT 'test.job', k, now() - interval '1 minute' FROM unnest(ARRAY['raised', 'lowered']) k;
                INSERT INTO \(s).jobs (kind, concurrency_key, state, attempt, locked_by, locked_until, attempted_at)
                SELECT 'test.job', k, 'running', 1, 'w', now() + interval '1 hour', now()
                FROM unnest(ARRAY['raised', 'lowered']) k;
                DELETE FROM \(s).concurrency_key_wakeups;
                DELETE FROM \(s).concurrency_keys;
                INSERT INTO \(s).concurrency_keys (kind, concurrency_key, priority, head_run_at, head_id) VALUES
                    ('test.job', 'raised', 0, 'infinity', 1), ('test.job', 'lowered', 0, 'infinity', 1);
                -- Written by hand, without the wake-up set_concurrency_key_limit() adds.
                INSERT INTO \(s).concurrency_key_limits (kind, concurrency_key, max_running)
                VALUES ('test.job', 'raised', 3), ('test.job', 'lowered', 1);
                """)
            // The kind's limit is 2: by it both keys would have room; by their own, only 'raised'.
            let result = try await database.query(
                """
                SELECT concurrency_key || ':' || was AS mended
                FROM \(s).repair_concurrency_keys('{test.job}', '{test.job}', '{2}') ORDER BY 1
                """)
            #expect(try result.rows.map { try $0.decode("mended", as: String.self) } == ["raised:limit_raised"])
        }
    }
}
