import Foundation
@testable import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing

/// Ordered concurrency keys (`ConcurrencyKeyLimits.setOrdered`, sql/job_queue/018): one job of
/// the key at a time across replicas, oldest (lowest id) first; a retrying oldest job holds the
/// line, and the next goes when it succeeds, dies or is cancelled.
@Suite("Ordered concurrency keys", .timeLimit(.minutes(4)))
struct OrderedConcurrencyKeyTests {
    /// What handlers saw of one key: each run's start and end, in the order they happened.
    final class Timeline: Sendable {
        private let state = Mutex<(events: [String], running: Int, peak: Int, starts: [Int64])>(([], 0, 0, []))

        func start(_ id: Int64) {
            state.withLock {
                $0.running += 1
                $0.peak = max($0.peak, $0.running)
                $0.starts.append(id)
                $0.events.append("start \(id)")
            }
        }

        func end(_ id: Int64) {
            state.withLock {
                $0.running -= 1
                $0.events.append("end \(id)")
            }
        }

        /// Counts an attempt of `id`; returns its number.
        func attempt(_ id: Int64) -> Int {
            attempts.withLock {
                $0[id, default: 0] += 1; return $0[id]!
            }
        }
        private let attempts = Mutex<[Int64: Int]>([:])

        var peak: Int { state.withLock { $0.peak } }
        /// Job ids in the order their attempts started (a retried job appears once per attempt).
        var starts: [Int64] { state.withLock { $0.starts } }
    }

    @Test(
        """
        three replicas run an ordered key's jobs one at a time in id order, whatever the key's limit: a failing \
        oldest job holds the line through its retries, a dead-lettered or cancelled one lets the next go
        """
    )
    func strictOrderAcrossReplicas() async throws {
        try await withQueueDatabase { database in
            let connection = try await database.connect()
            let limits = ConcurrencyKeyLimits(connection, schema: database.queue)
            // An adaptive limit of 5 must not raise it above one.
            try await limits.set(kind: "test.job", concurrencyKey: "fifo", maxRunning: 5)
            #expect(try await limits.setOrdered(kind: "test.job", concurrencyKey: "fifo", true) == false)
            #expect(try await limits.isOrdered(kind: "test.job", concurrencyKey: "fifo"))
            let ids: [Int64] = try await connection.query(
                PQQuery(
                    "insertOrdered",
                    """
                    INSERT INTO \(database.schema).jobs (kind, concurrency_key, payload)
                    SELECT 'test.job', 'fifo', jsonb_build_object('n', n) FROM generate_series(1, 12) n
                    ORDER BY n RETURNING id
                    """)
            ).rows.map { try $0.decode("id") }.sorted()
            // The unordered key beside it keeps its kind's limit.
            try await database.query(
                """
                INSERT INTO \(database.schema).jobs (kind, concurrency_key)
                SELECT 'test.job', 'plain' FROM generate_series(1, 12)
                """)
            let failing = ids[2]  // fails twice, then succeeds
            let dying = ids[5]  // fails for good: dead-lettered
            let cancelled = ids[8]  // cancelled
            let fifo = Timeline()
            let plain = Timeline()
            let handler = ClosureHandler(
                retryStrategy: .schedule([.milliseconds(300), .milliseconds(300)], jitter: 0), concurrencyLimit: 3
            ) { job in
                let timeline = job.concurrencyKey == "fifo" ? fifo : plain
                timeline.start(job.id)
                defer { timeline.end(job.id) }
                try? await Task.sleep(for: .milliseconds(10))
                guard job.concurrencyKey == "fifo" else { return .complete }
                let attempt = fifo.attempt(job.id)
                switch job.id {
                case failing where attempt <= 2: return .retry("receiver down")
                case dying: return .fail("gone for good")
                case cancelled: return .cancel("no longer needed")
                default: return .complete
                }
            }
            let drained = try await drainWithWorkers(database, replicas: 3, handlers: [handler]) {
                $0.concurrency = 8
                $0.pollInterval = .milliseconds(50)
            }
            await connection.close()
            #expect(drained)
            #expect(fifo.peak == 1, "an ordered key ran \(fifo.peak) jobs at once")
            var expected: [Int64] = []
            for id in ids { expected += id == failing ? [id, id, id] : [id] }
            #expect(fifo.starts == expected, "attempts of the ordered key out of order")
            #expect(plain.peak > 1, "the unordered key beside it kept its kind's limit of 3: peak \(plain.peak)")
            let dead = try await database.count(
                "SELECT count(*) FROM \(database.schema).dead_letter_jobs WHERE job_id = \(dying)")
            #expect(dead == 1)
        }
    }

    @Test("a key whose oldest job waits for its retry holds the rest; making it unordered frees them")
    func turningOrderOffFreesTheKey() async throws {
        try await withQueueDatabase { database in
            let connection = try await database.connect()
            let limits = ConcurrencyKeyLimits(connection, schema: database.queue)
            try await limits.setOrdered(kind: "test.job", concurrencyKey: "fifo", true)
            try await database.query(
                """
                INSERT INTO \(database.schema).jobs (kind, concurrency_key)
                SELECT 'test.job', 'fifo' FROM generate_series(1, 6)
                """)
            let head = Int64(
                try await database.count("SELECT min(id) FROM \(database.schema).jobs WHERE concurrency_key = 'fifo'"))
            func claim() async throws -> [Int64] { try await Self.claim(connection, database) }
            #expect(try await claim() == [head], "the oldest job alone, though the key's limit is 4")
            #expect(try await claim() == [], "one at a time")
            // Its attempt fails; the retry is due in an hour (what the finisher writes).
            try await database.query(
                """
                UPDATE \(database.schema).jobs SET state = 'available', run_at = now() + interval '1 hour',
                    locked_by = NULL, locked_until = NULL
                WHERE id = \(head)
                """)
            #expect(try await claim() == [], "a retrying oldest job holds the line")
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(database.schema).concurrency_keys WHERE concurrency_key = 'fifo' "
                        + "AND head_id = \(head) AND head_run_at > now()") == 1,
                "the key's row waits for its oldest job's retry, so claims pass it by")
            #expect(try await claim() == [])
            let mended = try await database.count(
                "SELECT count(*) FROM \(database.schema).repair_concurrency_keys(ARRAY['test.job'], "
                    + "ARRAY['test.job'], ARRAY[4])")
            #expect(mended == 0, "the reconciler counts the waiting row as right")
            #expect(try await limits.setOrdered(kind: "test.job", concurrencyKey: "fifo", false) == true)
            #expect(try await limits.list(kind: "test.job").isEmpty)
            let worker = RunningWorker(
                database, handlers: [ClosureHandler(concurrencyLimit: 4) { _ in .complete }]
            ) {
                $0.concurrency = 8
                $0.pollInterval = .milliseconds(50)
            }
            let freed = try await eventually {
                try await database.count("SELECT count(*) FROM \(database.schema).jobs") == 1
            }
            #expect(freed, "once unordered, the later jobs run while the oldest waits for its retry")
            try await worker.stop()
            await connection.close()
        }
    }

    @Test("a waiting oldest job that is cancelled (deleted) lets the next one go at the next claim")
    func cancelledHeadReleasesTheLine() async throws {
        try await withQueueDatabase { database in
            let connection = try await database.connect()
            try await ConcurrencyKeyLimits(connection, schema: database.queue)
                .setOrdered(kind: "test.job", concurrencyKey: "fifo", true)
            let ids: [Int64] = try await connection.query(
                PQQuery(
                    "insertThree",
                    """
                    INSERT INTO \(database.schema).jobs (kind, concurrency_key, run_at)
                    SELECT 'test.job', 'fifo', now() + CASE WHEN n = 1 THEN interval '1 hour' ELSE interval '0' END
                    FROM generate_series(1, 3) n ORDER BY n RETURNING id
                    """)
            ).rows.map { try $0.decode("id") }.sorted()
            func claim() async throws -> [Int64] { try await Self.claim(connection, database) }
            #expect(try await claim() == [], "the oldest job is due in an hour: it holds the others")
            try await database.query("DELETE FROM \(database.schema).jobs WHERE id = \(ids[0])")
            #expect(try await claim() == [ids[1]], "its cancel lets the next go")
            await connection.close()
        }
    }

    @Test("an ordered key keeps its row when its own limit is removed, and the limit 0 still holds it")
    func limitsAndOrder() async throws {
        try await withQueueDatabase { database in
            let connection = try await database.connect()
            let limits = ConcurrencyKeyLimits(connection, schema: database.queue)
            try await limits.set(kind: "test.job", concurrencyKey: "k", maxRunning: 3)
            try await limits.setOrdered(kind: "test.job", concurrencyKey: "k", true)
            #expect(try await limits.set(kind: "test.job", concurrencyKey: "k", maxRunning: nil) == 3)
            let rows = try await limits.list(kind: "test.job")
            #expect(rows.map(\.maxRunning) == [nil] && rows.map(\.ordered) == [true])
            try await limits.set(kind: "test.job", concurrencyKey: "k", maxRunning: 0)
            try await database.query(
                "INSERT INTO \(database.schema).jobs (kind, concurrency_key) VALUES ('test.job', 'k')")
            let claimed = try await connection.query(
                database.queue.statements.claimJobs,
                [
                    PQArray(["test.job"]), 10, "w", PQInterval(.seconds(60)), PQArray(["test.job"]),
                    PQArray([5]),
                ])
            #expect(claimed.rows.isEmpty, "a limit of 0 holds an ordered key too")
            try await limits.setOrdered(kind: "test.job", concurrencyKey: "k", false)
            #expect(try await limits.list(kind: "test.job").map(\.maxRunning) == [0])
            await connection.close()
        }
    }

    /// One claim of up to 10 `test.job` jobs by worker `w`, the kind's limit per key 4: the ids.
    static func claim(_ connection: PQConnection, _ database: TestDatabase) async throws -> [Int64] {
        try await connection.query(
            database.queue.statements.claimJobs,
            [PQArray(["test.job"]), 10, "w", PQInterval(.seconds(60)), PQArray(["test.job"]), PQArray([4])]
        ).rows.map { try $0.decode("id") }
    }
}
