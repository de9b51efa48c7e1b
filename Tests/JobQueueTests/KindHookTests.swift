import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// A program's hooks, called by the queue's triggers instead of triggers of the program's own on
/// the queue's tables; its dead-letter reasons; waking the jobs it snoozed.
@Suite("Kind hooks", .timeLimit(.minutes(4)))
struct KindHookTests {
    /// A table and two hook functions that record what the queue told them.
    static func installHooks(_ database: TestDatabase) async throws {
        let s = database.schema
        try await database.script(
            """
            CREATE TABLE \(s).seen (event text, job_id bigint, payload jsonb, last_error text);
            CREATE FUNCTION \(s).on_inserted(job_id bigint, payload jsonb) RETURNS void LANGUAGE sql AS $$
                INSERT INTO \(s).seen VALUES ('inserted', job_id, payload, NULL)
            $$;
            CREATE FUNCTION \(s).on_dead(job_id bigint, payload jsonb, last_error text) RETURNS void
            LANGUAGE sql AS $$
                INSERT INTO \(s).seen VALUES ('dead_lettered', job_id, payload, last_error)
            $$;
            SELECT \(s).set_kind_hook('a', 'inserted', '\(s).on_inserted');
            SELECT \(s).set_kind_hook('a', 'dead_lettered', '\(s).on_dead');
            """)
    }

    @Test("inserted: called once per job of the kind, after a many-row insert, in its transaction")
    func inserted() async throws {
        try await withQueueDatabase { database in
            try await Self.installHooks(database)
            let s = database.schema
            let jobs = [
                NewJob(kind: "a", payload: PQJSON(#"{"n": 1}"#)), NewJob(kind: "b"),
                NewJob(kind: "a", payload: PQJSON(#"{"n": 2}"#)),
            ]
            let inserted = try await database.withConnection { connection in
                try await JobEnqueuer(connection, schema: database.queue).enqueue(jobs)
            }
            #expect(inserted.count == 3)
            let seen = try await database.query("SELECT job_id, payload FROM \(s).seen ORDER BY job_id")
            let ids = try seen.rows.map { try $0.decode("job_id", as: Int64.self) }
            let kindA = try await database.query("SELECT id FROM \(s).jobs WHERE kind = 'a' ORDER BY id")
            let expected = try kindA.rows.map { try $0.decode("id", as: Int64.self) }
            #expect(ids == expected)
            #expect(try seen.rows.map { try $0.decode("payload", as: String.self) } == [#"{"n": 1}"#, #"{"n": 2}"#])
            // Rolled back with the insert.
            await #expect(throws: (any Error).self) {
                try await database.script(
                    "BEGIN; INSERT INTO \(s).jobs (kind) VALUES ('a'); SELECT 1/0; COMMIT;")
            }
            #expect(try await database.count("SELECT count(*) FROM \(s).seen") == 2)
            // Removed: no longer called.
            try await database.script("SELECT \(s).set_kind_hook('a', 'inserted', NULL)")
            try await database.script("INSERT INTO \(s).jobs (kind) VALUES ('a')")
            #expect(try await database.count("SELECT count(*) FROM \(s).seen") == 2)
        }
    }

    @Test("dead_lettered: called for a dead letter of the kind, with its last error, whoever writes it")
    func deadLettered() async throws {
        try await withQueueDatabase { database in
            try await Self.installHooks(database)
            let s = database.schema
            try await database.script(
                """
                INSERT INTO \(s).dead_letter_jobs
                    (job_id, kind, payload, priority, attempts, max_attempts, reason, last_error, created_at)
                VALUES (41, 'a', '{"x": 1}', 0, 3, 3, 'attempts_exhausted', 'HTTP 500', now()),
                       (42, 'b', '{}', 0, 3, 3, 'attempts_exhausted', 'HTTP 500', now());
                """)
            let seen = try await database.query("SELECT * FROM \(s).seen WHERE event = 'dead_lettered'")
            #expect(seen.count == 1)
            #expect(try seen.first?.decode("job_id", as: Int64.self) == 41)
            #expect(try seen.first?.decode("last_error", as: String.self) == "HTTP 500")
        }
    }

    @Test("a hook must name a function with the event's signature; an unknown event is refused")
    func registration() async throws {
        try await withQueueDatabase { database in
            let s = database.schema
            await #expect(throws: PQError.self) {
                try await database.script("SELECT \(s).set_kind_hook('a', 'inserted', 'pg_catalog.now')")
            }
            await #expect(throws: PQError.self) {
                try await database.script("SELECT \(s).set_kind_hook('a', 'finished', 'pg_catalog.now')")
            }
            let hooks = try await database.count("SELECT count(*) FROM \(s).kind_hooks")
            #expect(hooks == 0)
        }
    }

    @Test("dead-letter reasons: only registered ones are accepted; a program adds its own")
    func reasons() async throws {
        try await withQueueDatabase { database in
            let s = database.schema
            let insert = """
                INSERT INTO \(s).dead_letter_jobs
                    (job_id, kind, payload, priority, attempts, max_attempts, reason, created_at)
                VALUES (1, 'a', '{}', 0, 1, 1, 'customer_closed', now())
                """
            await #expect(throws: PQError.self) { try await database.script(insert) }
            try await database.script(
                "SELECT \(s).add_dead_letter_reason('customer_closed', 'The customer closed the account.')")
            try await database.script(insert)
            let deadLetters = try await database.count("SELECT count(*) FROM \(s).dead_letter_jobs")
            #expect(deadLetters == 1)
        }
    }

    @Test("wake_snoozed runs now the jobs of a kind and key snoozed for that reason, and no others")
    func wakeSnoozed() async throws {
        try await withQueueDatabase { database in
            let s = database.schema
            try await database.script(
                """
                INSERT INTO \(s).jobs (kind, concurrency_key, run_at, last_error) VALUES
                    ('a', 'k', now() + interval '1 hour', 'waiting: circuit open'),
                    ('a', 'k', now() + interval '1 hour', 'HTTP 500'),
                    ('a', 'other', now() + interval '1 hour', 'waiting: circuit open'),
                    ('b', 'k', now() + interval '1 hour', 'waiting: circuit open');
                """)
            let woken = try await database.scalar("SELECT \(s).wake_snoozed('a', 'k', 'waiting:')", as: Int.self)
            #expect(woken == 1)
            let due = try await database.query(
                "SELECT kind, concurrency_key, last_error FROM \(s).jobs WHERE run_at <= now()")
            #expect(due.count == 1)
            #expect(try due.first?.decode("last_error", as: String.self) == "waiting: circuit open")
            #expect(try due.first?.decode("concurrency_key", as: String.self) == "k")
        }
    }
}
