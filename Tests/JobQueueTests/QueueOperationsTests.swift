import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// The queue's operations as a program (the CLI, a console) calls them, on a queue of its own.
@Suite("Queue operations", .timeLimit(.minutes(4)))
struct QueueOperationsTests {
    @Test("enqueue inserts one job with its options, skips a live unique key, and inserts copies")
    func enqueue() async throws {
        try await withQueueDatabase { database in
            try await database.withConnection { connection in
                let enqueuer = JobEnqueuer(connection, schema: database.queue)
                let runAt = Date(timeIntervalSince1970: 2_000_000_000.25)
                let job = NewJob(
                    kind: "test.kind", payload: PQJSON(#"{"n": 1}"#), runAt: runAt, priority: -2, maxAttempts: 3,
                    uniqueKey: "test:1", concurrencyKey: "key-a")
                let id = try #require(try await enqueuer.enqueue(job))
                let row = try #require(
                    try await database.query("SELECT * FROM \(database.schema).jobs WHERE id = $1", [id]).first)
                #expect(try row.decode("kind", as: String.self) == "test.kind")
                #expect(try row.decode("payload", as: String.self) == #"{"n": 1}"#)
                #expect(try row.decode("run_at", as: Date.self) == runAt)
                #expect(try row.decode("priority", as: Int.self) == -2)
                #expect(try row.decode("max_attempts", as: Int.self) == 3)
                #expect(try row.decode("concurrency_key", as: String.self) == "key-a")
                #expect(try await enqueuer.enqueue(job) == nil, "the unique key is live")

                #expect(try await enqueuer.enqueue(NewJob(kind: "noop"), copies: 250) == 250)
                #expect(
                    try await database.count(
                        "SELECT count(*) FROM \(database.schema).jobs WHERE kind = 'noop' AND payload = '{}'")
                        == 250)

                struct Signup: Codable {
                    var userID: String
                    var accountID: String
                }
                let event = try NewJob(kind: "email.welcome", encoding: Signup(userID: "user-1", accountID: "acct-1"))
                let eventID = try #require(try await enqueuer.enqueue(event))
                #expect(
                    try await database.scalar(
                        "SELECT payload::text FROM \(database.schema).jobs WHERE id = $1", [eventID],
                        as: String.self)
                        == #"{"userID": "user-1", "accountID": "acct-1"}"#)
            }
        }
    }

    @Test("dead letters: filters, one requeue with its errors, requeue of chosen ids in batches, purge")
    func deadLetters() async throws {
        try await withQueueDatabase { database in
            try await database.query(
                """
                INSERT INTO \(database.schema).dead_letter_jobs (job_id, kind, payload, priority, attempts, \
                max_attempts, reason, last_error, unique_key, created_at, dead_at)
                SELECT n, CASE WHEN n % 2 = 0 THEN 'even' ELSE 'odd' END, jsonb_build_object('n', n), 0, 8, 8,
                       'attempts_exhausted', 'boom', CASE WHEN n = 1 THEN 'unique-1' END, now(),
                       now() - make_interval(days => n)
                FROM generate_series(1, 10) n
                """)
            try await database.withConnection { connection in
                let deadLetters = DeadLetters(connection, schema: database.queue)
                #expect(try await deadLetters.list().count == 10)
                #expect(try await deadLetters.list(.init(kind: "even")).allSatisfy { $0.kind == "even" })
                #expect(
                    try await deadLetters.list(.init(diedSince: Date().addingTimeInterval(-3.5 * 86_400))).count == 3)
                let newest = try #require(try await deadLetters.list(limit: 1).first)
                #expect(newest.jobID == 1 && newest.lastError == "boom" && newest.requeuedAt == nil)
                #expect(try await deadLetters.get(id: newest.id) == newest)
                #expect(try await deadLetters.get(id: -1) == nil)

                // A job with the dead letter's unique key is queued: requeueing it must not duplicate it.
                try await JobEnqueuer(connection, schema: database.queue).enqueue(
                    NewJob(kind: "odd", uniqueKey: "unique-1"))
                await #expect(throws: DeadLetters.RequeueError.self) { try await deadLetters.requeue(id: newest.id) }
                await #expect(throws: DeadLetters.RequeueError.notFound(id: -1)) {
                    try await deadLetters.requeue(id: -1)
                }

                let second = try #require(try await deadLetters.list(.init(kind: "even"), limit: 1).first)
                let job = try await deadLetters.requeue(id: second.id)
                #expect(
                    try await database.count("SELECT count(*) FROM \(database.schema).jobs WHERE id = $1", [job])
                        == 1)
                #expect(try await deadLetters.get(id: second.id)?.requeuedJobID == job)

                let odd = try await deadLetters.list(.init(kind: "odd")).map(\.id)
                var batches = 0
                let summary = try await deadLetters.requeueAll(.init(ids: odd), batchSize: 2) { _, matched in
                    batches += 1
                    #expect(matched == 5)
                }
                #expect((summary.matched, summary.requeued, summary.skippedAlreadyQueued) == (5, 4, 1))
                #expect(batches == 3)
                let again = try await deadLetters.requeueAll(.init(ids: odd))
                #expect(
                    (again.matched, again.requeued, again.skippedAlreadyQueued) == (1, 0, 1),
                    "only the one still blocked is left")
                #expect(try await deadLetters.list(includeRequeued: false).count == 5)

                #expect(
                    try await deadLetters.purge(
                        diedBefore: Date().addingTimeInterval(-5.5 * 86_400), kind: "even", batchSize: 1) == 3)
                #expect(try await database.count("SELECT count(*) FROM \(database.schema).dead_letter_jobs") == 7)
            }
        }
    }

    @Test("pausing a kind is recorded once and shows in the statistics; resuming an unpaused kind says so")
    func pauseAndStatistics() async throws {
        try await withQueueDatabase { database in
            try await database.withConnection { connection in
                let paused = PausedKinds(connection, schema: database.queue)
                #expect(try await paused.pause("noop", by: "tester"))
                #expect(try await paused.pause("noop", by: "someone else") == false)
                try await JobEnqueuer(connection, schema: database.queue).enqueue(NewJob(kind: "noop"), copies: 3)
                let statistics = try await QueueStatistics.read(connection, schema: database.queue)
                #expect(statistics.pausedKinds.map(\.kind) == ["noop"])
                #expect(statistics.pausedKinds.first?.pausedBy == "tester")
                #expect(statistics.depth.map { "\($0.kind) \($0.state) \($0.jobs)" } == ["noop available 3"])
                #expect(statistics.waiting.first?.waiting == 3)
                #expect(try await paused.resume("noop"))
                #expect(try await paused.resume("noop") == false)
            }
        }
    }
}
