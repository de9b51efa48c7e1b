import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// The operations other modules use instead of naming the queue's tables: set-based enqueue,
/// a job's trace context, live-job checks and cancels by payload key, dead letters by payload.
@Suite("Queue operations by payload", .timeLimit(.minutes(4)))
struct QueueNounOperationsTests {
    /// What makes a waiting job running, as a claim does.
    let running = "state = 'running', locked_by = 'w', locked_until = now() + interval '1 hour'"

    @Test("enqueue of many jobs: one statement, options kept, live and repeated unique keys skipped")
    func enqueueMany() async throws {
        try await withQueueDatabase { database in
            try await database.withConnection { connection in
                let enqueuer = JobEnqueuer(connection, schema: database.queue)
                try await enqueuer.enqueue(NewJob(kind: "a", uniqueKey: "taken"))
                let runAt = Date(timeIntervalSince1970: 2_000_000_000)
                let jobs = [
                    NewJob(
                        kind: "a", payload: PQJSON(#"{"n": 1}"#), runAt: runAt, priority: -3, maxAttempts: 4,
                        uniqueKey: "k1", concurrencyKey: "c1", traceContext: "00-trace-span-01"),
                    NewJob(kind: "a", uniqueKey: "taken"),
                    NewJob(kind: "b", uniqueKey: "k2"),
                    NewJob(kind: "b", uniqueKey: "k2"),
                    NewJob(kind: "c"),
                    NewJob(kind: "c"),
                ]
                let inserted = try await connection.transaction { connection in
                    try await JobEnqueuer(connection, schema: database.queue).enqueue(jobs)
                }
                #expect(inserted.count == 4)
                #expect(Set(inserted.compactMap(\.uniqueKey)) == ["k1", "k2"])
                #expect(try await enqueuer.enqueue([]).isEmpty)
                let id = try #require(inserted.first { $0.uniqueKey == "k1" }?.id)
                let row = try #require(
                    try await database.query("SELECT * FROM \(database.schema).jobs WHERE id = $1", [id]).first)
                #expect(try row.decode("kind", as: String.self) == "a")
                #expect(try row.decode("payload", as: String.self) == #"{"n": 1}"#)
                #expect(try row.decode("run_at", as: Date.self) == runAt)
                #expect(try row.decode("priority", as: Int.self) == -3)
                #expect(try row.decode("max_attempts", as: Int.self) == 4)
                #expect(try row.decode("concurrency_key", as: String.self) == "c1")
                #expect(try row.decode("trace_context", as: String.self) == "00-trace-span-01")
                #expect(try await database.scalar("SELECT count(*) FROM \(database.schema).jobs", as: Int.self) == 5)
                // No run_at: now.
                #expect(
                    try await database.scalar(
                        "SELECT bool_and(run_at <= now()) FROM \(database.schema).jobs WHERE kind = 'c'",
                        as: Bool.self) == true)
            }
        }
    }

    @Test("the enqueueing statement enqueues nothing when its transaction rolls back")
    func enqueueingStatement() async throws {
        try await withQueueDatabase { database in
            try await database.withConnection { connection in
                let statement = JobEnqueuer.enqueueing(
                    [NewJob(kind: "a", uniqueKey: "u1"), NewJob(kind: "a", uniqueKey: "u2")], in: database.queue)
                struct Rollback: Error {}
                await #expect(throws: Rollback.self) {
                    try await connection.transaction { connection in
                        try await connection.query(statement.query, statement.bindings)
                        throw Rollback()
                    }
                }
                #expect(try await database.scalar("SELECT count(*) FROM \(database.schema).jobs", as: Int.self) == 0)
                try await connection.query(statement.query, statement.bindings)
                #expect(try await database.scalar("SELECT count(*) FROM \(database.schema).jobs", as: Int.self) == 2)
            }
        }
    }

    @Test("trace context and live-job checks by payload key and by unique key")
    func traceContextAndIsQueued() async throws {
        try await withQueueDatabase { database in
            try await database.withConnection { connection in
                let enqueuer = JobEnqueuer(connection, schema: database.queue)
                let traced = try #require(
                    try await enqueuer.enqueue(
                        NewJob(kind: "send", payload: PQJSON(#"{"item": "x1"}"#), traceContext: "00-abc-def-01")))
                let plain = try #require(try await enqueuer.enqueue(NewJob(kind: "send", uniqueKey: "send:plain")))
                let jobs = QueuedJobs(connection, schema: database.queue)
                #expect(try await jobs.traceContext(ofJob: traced) == "00-abc-def-01")
                #expect(try await jobs.traceContext(ofJob: plain) == nil)
                #expect(try await jobs.traceContext(ofJob: -1) == nil)
                #expect(try await jobs.isQueued(kind: "send", payloadKey: "item", equals: "x1"))
                #expect(try await jobs.isQueued(kind: "send", payloadKey: "item", equals: "x2") == false)
                #expect(try await jobs.isQueued(kind: "other", payloadKey: "item", equals: "x1") == false)
                #expect(try await jobs.isQueued(uniqueKey: "send:plain"))
                #expect(try await jobs.isQueued(uniqueKey: "send:other") == false)
                // Running counts as queued.
                try await database.query(
                    "UPDATE \(database.schema).jobs SET \(running) WHERE id = $1", [traced])
                #expect(try await jobs.isQueued(kind: "send", payloadKey: "item", equals: "x1"))
                try await database.query("DELETE FROM \(database.schema).jobs WHERE id = $1", [plain])
                #expect(try await jobs.isQueued(uniqueKey: "send:plain") == false)
            }
        }
    }

    @Test("cancel of waiting jobs by payload key: running ones stay, each removal is a cancelled attempt")
    func cancelWaiting() async throws {
        try await withQueueDatabase { database in
            try await database.withConnection { connection in
                let enqueuer = JobEnqueuer(connection, schema: database.queue)
                var ids: [String: Int64] = [:]
                for item in ["x1", "x2", "x3", "x4"] {
                    ids[item] = try await enqueuer.enqueue(
                        NewJob(kind: "send", payload: PQJSON(#"{"item": "\#(item)"}"#)))
                }
                try await enqueuer.enqueue(NewJob(kind: "other", payload: PQJSON(#"{"item": "x1"}"#)))
                try await database.query(
                    "UPDATE \(database.schema).jobs SET \(running), attempt = 1 WHERE id = $1", [ids["x2"]!])
                try await database.query("UPDATE \(database.schema).jobs SET attempt = 2 WHERE id = $1", [ids["x3"]!])
                let jobs = QueuedJobs(connection, schema: database.queue)
                let removed = try await jobs.cancelWaiting(
                    kind: "send", payloadKey: "item", in: ["x1", "x2", "x3", "nope"], actor: "tester",
                    reason: "not wanted")
                #expect(removed == 2)
                #expect(
                    try await jobs.cancelWaiting(kind: "send", payloadKey: "item", in: [], actor: "t", reason: "r") == 0
                )
                let left = try await database.query(
                    "SELECT kind, payload ->> 'item' AS item FROM \(database.schema).jobs ORDER BY id"
                ).rows.map { "\(try $0.decode("kind", as: String.self)) \(try $0.decode("item", as: String.self))" }
                #expect(left == ["send x2", "send x4", "other x1"])
                let attempts = try await database.query(
                    """
                    SELECT job_id, kind, attempt, worker_id, outcome, error, finished_at IS NOT NULL AS finished
                    FROM \(database.schema).job_attempts ORDER BY job_id
                    """
                ).rows.map {
                    """
                    \(try $0.decode("job_id", as: Int64.self)) \(try $0.decode("kind", as: String.self)) \
                    \(try $0.decode("attempt", as: Int.self)) \(try $0.decode("worker_id", as: String.self)) \
                    \(try $0.decode("outcome", as: String.self)) \(try $0.decode("error", as: String.self)) \
                    \(try $0.decode("finished", as: Bool.self))
                    """
                }
                #expect(
                    attempts == [
                        "\(ids["x1"]!) send 1 tester cancelled not wanted true",
                        "\(ids["x3"]!) send 3 tester cancelled not wanted true",
                    ])
            }
        }
    }

    @Test("requeueable dead letters of a kind, with a payload key's value")
    func deadLettersByPayload() async throws {
        try await withQueueDatabase { database in
            try await database.query(
                """
                INSERT INTO \(database.schema).dead_letter_jobs (job_id, kind, payload, priority, attempts, \
                max_attempts, reason, last_error, created_at, dead_at, requeued_at)
                SELECT n, CASE WHEN n = 4 THEN 'other' ELSE 'send' END,
                       CASE WHEN n = 3 THEN '{}'::jsonb ELSE jsonb_build_object('item', 'x' || n) END,
                       0, 8, 8, 'attempts_exhausted', 'boom', now(), now(), CASE WHEN n = 2 THEN now() END
                FROM generate_series(1, 5) n
                """)
            try await database.withConnection { connection in
                let found = try await DeadLetters(connection, schema: database.queue).requeueable(
                    kind: "send", payloadKey: "item")
                let jobIDs = try await database.query(
                    "SELECT id, job_id FROM \(database.schema).dead_letter_jobs ORDER BY id"
                ).rows.map { (try $0.decode("id", as: Int64.self), try $0.decode("job_id", as: Int64.self)) }
                let idOfJob = Dictionary(uniqueKeysWithValues: jobIDs.map { ($0.1, $0.0) })
                #expect(found.map(\.id) == [idOfJob[1]!, idOfJob[3]!, idOfJob[5]!])
                #expect(found.map(\.value) == ["x1", nil, "x5"])
            }
        }
    }
}
