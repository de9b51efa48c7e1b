import Foundation
import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing

/// How outcomes are written (one failing row fails its job alone), which kinds a worker claims,
/// unique keys, and the DBA views.
extension JobQueueTests {
    @Test("a handler that throws, or whose statements fail, fails that job alone")
    func badRowsFailAlone() async throws {
        try await withQueueDatabase { database in
            let handler = ClosureHandler(retryStrategy: .schedule([.seconds(3600)])) { job in
                let text = job.payload.text
                if text.contains("throw") { throw TestFailure(message: "cannot read \u{0}payload") }
                if text.contains("badsql") {
                    return .complete(statements: [
                        BoundStatement(PQQuery("bad", "INSERT INTO no_such_table VALUES (1)"))
                    ])
                }
                return .complete
            }
            let worker = RunningWorker(database, handlers: [handler])
            try await database.query(
                """
                INSERT INTO \(database.schema).jobs (kind, payload)
                SELECT 'test.job', CASE WHEN n % 10 = 3 THEN '"throw"'::jsonb WHEN n % 10 = 7 THEN '"badsql"'::jsonb \
                ELSE to_jsonb(n) END
                FROM generate_series(1, 100) n
                """)
            #expect(
                await eventually {
                    (try? await database.count("SELECT count(*) FROM \(database.schema).job_attempts")) == 100
                })
            try await worker.stop()
            let outcomes = try await database.query(
                """
                SELECT outcome || ': ' || count(*) || ' ' || string_agg(DISTINCT left(coalesce(error, ''), 80), ' | \
                ') AS o FROM \(database.schema).job_attempts GROUP BY outcome
                """
            ).rows.map { try $0.decode("o", as: String.self) }
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(database.schema).job_attempts WHERE outcome = 'succeeded'")
                    == 80, "\(outcomes)")
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(database.schema).job_attempts WHERE outcome = 'failed'")
                    == 20, "\(outcomes)")
            let waiting = try await database.query(
                """
                SELECT state || '/' || attempt || '/' || left(coalesce(last_error, ''), 60) AS j FROM \
                \(database.schema).jobs ORDER BY id
                """
            ).rows.map { try $0.decode("j", as: String.self) }
            #expect(
                try await database.count(
                    """
                    SELECT count(*) FROM \(database.schema).jobs WHERE attempt = 1 AND state = 'available' \
                    AND last_error LIKE '%cannot read%'
                    """
                ) == 10,
                "\(outcomes) \(waiting)")
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(database.schema).jobs WHERE last_error LIKE '%no_such_table%'") == 10)
        }
    }

    @Test("row statements of outcomes written together run as one statement; a refused row fails only its job")
    func rowStatementsRunTogether() async throws {
        try await withQueueDatabase { database in
            try await database.script(
                """
                CREATE TABLE public.row_sink (job_id bigint PRIMARY KEY, label text NOT NULL CHECK (label <> \
                'refused'));
                CREATE TABLE public.row_sink_statements (n int);
                CREATE FUNCTION public.count_row_sink_statement() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN INSERT INTO public.row_sink_statements VALUES (1); RETURN NULL; END $$;
                CREATE TRIGGER row_sink_statement AFTER INSERT ON public.row_sink
                    FOR EACH STATEMENT EXECUTE FUNCTION public.count_row_sink_statement();
                """)
            let insert = PQQuery(
                "insertRowSink",
                "INSERT INTO public.row_sink (job_id, label) SELECT * FROM unnest($1::bigint[], $2::text[])")
            let handler = ClosureHandler(retryStrategy: .schedule([.seconds(3600)])) { job in
                // Handlers return at once, so outcomes pile up while a write is in flight.
                .complete(statements: [
                    .row(of: insert, [job.id, job.payload.text.contains("refused") ? "refused" : "ok"])
                ])
            }
            try await database.query(
                """
                INSERT INTO \(database.schema).jobs (kind, payload)
                SELECT 'test.job', CASE WHEN n = 250 THEN '"refused"'::jsonb ELSE to_jsonb(n) END
                FROM generate_series(1, 400) n
                """)
            let worker = RunningWorker(database, handlers: [handler]) { $0.concurrency = 64 }
            // 400 jobs and a refused batch split in search of its bad row: generous on a loaded machine.
            #expect(
                await eventually(timeout: .seconds(60)) {
                    (try? await database.count("SELECT count(*) FROM \(database.schema).job_attempts")) == 400
                })
            try await worker.stop()
            #expect(try await database.count("SELECT count(*) FROM public.row_sink WHERE label = 'ok'") == 399)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(database.schema).job_attempts WHERE outcome = 'succeeded'") == 399)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(database.schema).jobs WHERE last_error LIKE '%row_sink_label_check%'")
                    == 1)
            // One statement per write of many outcomes, not one per outcome.
            let statements = try await database.count("SELECT count(*) FROM public.row_sink_statements")
            #expect(statements > 0 && statements < 200, "\(statements) INSERT statements for 399 rows")
        }
    }

    @Test("a worker claims only the kinds it handles")
    func claimsOnlyItsKinds() async throws {
        try await withQueueDatabase { database in
            let worker = RunningWorker(database, handlers: [NoopHandler()])
            try await database.query(
                "INSERT INTO \(database.schema).jobs (kind) VALUES ('noop'), ('kind.from.the.future')")
            #expect(
                await eventually {
                    (try? await database.count("SELECT count(*) FROM \(database.schema).jobs")) == 1
                })
            // A later claim, which takes a job inserted after the foreign one, would have taken the
            // older foreign job first had it asked for its kind: once that job is done, the worker
            // has had its chance.
            try await database.query("INSERT INTO \(database.schema).jobs (kind) VALUES ('noop')")
            #expect(
                await eventually {
                    (try? await database.count(
                        "SELECT count(*) FROM \(database.schema).jobs WHERE kind = 'noop'")) == 0
                })
            try await worker.stop()
            #expect(
                try await database.scalar("SELECT kind FROM \(database.schema).jobs", as: String.self)
                    == "kind.from.the.future")
            #expect(try await database.scalar("SELECT attempt FROM \(database.schema).jobs", as: Int.self) == 0)
        }
    }

    @Test("a second insert with a live unique_key is skipped, by plain INSERT and by enqueue()")
    func uniqueKey() async throws {
        try await withQueueDatabase { database in
            try await database.query(
                "INSERT INTO \(database.schema).jobs (kind, unique_key) VALUES ('test.job', 'k1')")
            try await database.query(
                "INSERT INTO \(database.schema).jobs (kind, unique_key) VALUES ('test.job', 'k1')")
            let second = try await database.scalar(
                "SELECT \(database.schema).enqueue('test.job', unique_key => 'k1') AS id", as: Int64.self)
            #expect(second == nil)
            #expect(
                try await database.count("SELECT count(*) FROM \(database.schema).jobs WHERE unique_key = 'k1'")
                    == 1)
        }
    }

    @Test("jobs with fresh unique keys pass the duplicate check by; it is back on for the statements after them")
    func freshUniqueKeys() async throws {
        try await withQueueDatabase { database in
            let schema = database.schema
            let fresh = BoundStatement.merged(
                JobEnqueuer.enqueueingFreshRows(
                    [
                        NewJob(kind: "test.job", uniqueKey: "fresh-1"), NewJob(kind: "test.job", uniqueKey: "fresh-2"),
                        NewJob(kind: "test.job", concurrencyKey: "k"),
                    ], in: database.queue))
            #expect(fresh.count == 1)
            let setting = PQStatement(
                PQQuery("", "SELECT coalesce(current_setting('\(schema).fresh_unique_keys', true), '') AS setting"))
            let duplicate = PQStatement(
                PQQuery(
                    "", "INSERT INTO \(schema).jobs (kind, unique_key) VALUES ('test.job', 'fresh-1') RETURNING id"))
            // One implicit transaction, as an outcome's write: the fresh rows, then a plain insert of
            // a key they took, which the trigger must still skip.
            let results = try await database.withConnection { try await $0.pipeline(fresh + [setting, duplicate]) }
            #expect(try results[1].get().first?.decode("setting", as: String.self) == "off")
            #expect(try results[2].get().rows.isEmpty, "the plain insert of a taken key was not skipped")
            #expect(try await database.count("SELECT count(*) FROM \(schema).jobs") == 3)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(schema).jobs WHERE unique_key IN ('fresh-1', 'fresh-2')") == 2)
            // The keys are not checked: a taken one fails the statement, whose rows are all left out,
            // where the trigger would have skipped it and inserted the others.
            let taken = BoundStatement.merged(
                JobEnqueuer.enqueueingFreshRows(
                    [NewJob(kind: "test.job", uniqueKey: "fresh-3"), NewJob(kind: "test.job", uniqueKey: "fresh-1")],
                    in: database.queue))
            let refused = try await database.withConnection { try await $0.pipeline(taken) }
            guard case .failure(let error) = refused[0] else {
                Issue.record("a fresh row with a taken unique key was inserted or skipped")
                return
            }
            #expect(error.sqlState == "23505", "\(error)")
            #expect(
                try await database.count("SELECT count(*) FROM \(schema).jobs WHERE unique_key = 'fresh-3'") == 0)
        }
    }

    @Test("the DBA views report depth by state and dead letters by reason")
    func views() async throws {
        try await withQueueDatabase { database in
            try await database.script(
                """
                INSERT INTO \(database.schema).jobs (kind, run_at) VALUES ('a', now() - interval '1 minute'), ('a', \
                now() + interval '1 hour');
                """)
            let depth = try await database.query(
                "SELECT kind, state, jobs FROM \(database.schema).queue_depth ORDER BY state")
            let states = try depth.rows.map {
                let kind = try $0.decode("kind", as: String.self)
                return "\(kind)/\(try $0.decode("state", as: String.self))/\(try $0.decode("jobs", as: Int.self))"
            }
            #expect(states == ["a/available/1", "a/scheduled/1"])
            let wait = try #require(
                try await database.scalar(
                    "SELECT extract(epoch FROM wait)::float8 FROM \(database.schema).oldest_waiting WHERE kind = 'a'",
                    as: Double.self))
            #expect(wait >= 59)
        }
    }
}
