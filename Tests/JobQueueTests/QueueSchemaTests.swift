import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// JobQueue owns its schema: any name, channel and metric prefix a program gives it.
@Suite("Queues in schemas of their own", .timeLimit(.minutes(4)))
struct QueueSchemaTests {
    @Test("two queues in one database, used on one connection, keep their jobs, pauses and ledgers apart")
    func twoQueuesApart() async throws {
        try await withQueueDatabase { database in
            let mine = database.queue
            let other = try testQueue()
            try await database.withConnection { connection in
                #expect(
                    try await other.migrate(connection, logger: TestDatabase.logger) == other.migrations)
                #expect(try await other.migrate(connection, logger: TestDatabase.logger).isEmpty)
                #expect(try await JobEnqueuer(connection, schema: mine).enqueue(NewJob(kind: "a")) != nil)
                #expect(try await JobEnqueuer(connection, schema: other).enqueue(NewJob(kind: "b"), copies: 2) == 2)
                #expect(try await PausedKinds(connection, schema: other).pause("b", by: "test"))

                let mineStatistics = try await QueueStatistics.read(connection, schema: mine)
                let otherStatistics = try await QueueStatistics.read(connection, schema: other)
                #expect(mineStatistics.depth.map(\.kind) == ["a"])
                #expect(otherStatistics.depth.map(\.kind) == ["b"])
                #expect(otherStatistics.depth.map(\.jobs) == [2])
                #expect(mineStatistics.pausedKinds.isEmpty)
                #expect(otherStatistics.pausedKinds.map(\.kind) == ["b"])

                // Each queue's statements are prepared under names of their own on the shared connection.
                let prepared = try await connection.query(
                    PQQuery("", "SELECT name FROM pg_prepared_statements ORDER BY name")
                ).rows.map { try $0.decode("name", as: String.self) }
                #expect(prepared.contains("\(mine.name).enqueueJob"))
                #expect(prepared.contains("\(other.name).enqueueJobCopies"))
                #expect(prepared.contains("\(mine.name).statsDepth") && prepared.contains("\(other.name).statsDepth"))
            }
            for queue in [mine, other] {
                #expect(
                    try await database.count("SELECT count(*) FROM \(queue.name).schema_migrations")
                        == queue.migrations.count)
            }
            #expect(try await database.count("SELECT count(*) FROM pg_namespace WHERE nspname = 'webhook_worker'") == 0)
        }
    }

    @Test("the insert trigger notifies the queue's own channel")
    func notifiesItsChannel() async throws {
        try await withQueueDatabase { database in
            let listener = PQListener(
                conninfo: database.conninfo, channels: [database.queue.channel], applicationName: "queue-test-listen",
                logger: TestDatabase.logger)
            listener.start()
            var events = listener.events.makeAsyncIterator()
            #expect(await events.next() == .connected(reconnected: false))
            try await database.query("INSERT INTO \(database.schema).jobs (kind) VALUES ('hello')")
            #expect(await events.next() == .notification(channel: database.queue.channel, payload: "hello"))
            await listener.stop()
        }
    }

    @Test("names that are not plain identifiers are refused with a clear error")
    func namesAreChecked() throws {
        let queue = try JobQueueSchema(name: "billing_2")
        #expect((queue.name, queue.channel, queue.metricPrefix) == ("billing_2", "billing_2_jobs", "billing_2"))
        #expect(JobQueueSchema.default.name == "job_queue")
        for migration in queue.migrations {
            #expect(!migration.sql.contains("{{"), "\(migration.name) has a placeholder left")
            #expect(migration.sql.contains("billing_2."), "\(migration.name) does not name its schema")
        }
        for (name, channel, prefix) in [
            ("bad-name", "ok", "ok"), ("Upper", "ok", "ok"), ("1st", "ok", "ok"), ("", "ok", "ok"),
            (String(repeating: "q", count: 64), "ok", "ok"), ("ok", "x; DROP TABLE t", "ok"), ("ok", "ok", "a.b"),
        ] {
            #expect(throws: JobQueueSchema.InvalidName.self) {
                try JobQueueSchema(name: name, channel: channel, metricPrefix: prefix)
            }
        }
        let error = #expect(throws: JobQueueSchema.InvalidName.self) { try JobQueueSchema(name: "bad-name") }
        #expect(error?.description.contains("\"bad-name\" is not a plain identifier") == true)
    }
}
