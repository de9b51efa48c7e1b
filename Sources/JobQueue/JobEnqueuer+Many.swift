import Foundation
import LibPQ

/// A job that ``JobEnqueuer/enqueue(_:)-(_[NewJob])`` inserted: its id and unique key.
public struct EnqueuedJob: Sendable, Equatable {
    public var id: Int64
    public var uniqueKey: String?

    public init(id: Int64, uniqueKey: String?) {
        self.id = id
        self.uniqueKey = uniqueKey
    }
}

extension JobEnqueuer {
    /// The insert of many jobs, one array parameter per column ($1 to $8, ``manyBindings(_:)``),
    /// before its conflict clause: `condition`, when given, is evaluated for each row before it
    /// goes in.
    private static func insertFromArrays(_ schema: String, rowCondition condition: String? = nil) -> String {
        """
        INSERT INTO \(schema).jobs
            (kind, payload, run_at, priority, max_attempts, unique_key, concurrency_key, trace_context)
        SELECT t.kind, t.payload, coalesce(t.run_at, now()), t.priority, t.max_attempts, t.unique_key,
               t.concurrency_key, t.trace_context
        FROM unnest($1::text[], $2::jsonb[], $3::timestamptz[], $4::smallint[], $5::integer[], $6::text[],
                    $7::text[], $8::text[])
            AS t(kind, payload, run_at, priority, max_attempts, unique_key, concurrency_key, trace_context)
        """ + (condition.map { "\nWHERE \($0)" } ?? "")
    }

    /// Inserts many jobs in one statement, one array parameter per column; a job whose unique key
    /// is already queued (or taken by an earlier job of the same call) is skipped.
    static func insertMany(_ schema: String, returning: Bool = true) -> PQQuery {
        PQQuery(
            "\(schema)." + (returning ? "enqueueJobs" : "enqueueJobRows"),
            insertFromArrays(schema) + "\nON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING"
                + (returning ? "\nRETURNING id, unique_key" : ""))
    }

    /// Inserts many jobs whose unique keys are fresh: made for rows inserted in the same
    /// transaction, such as a delivery's job keyed by the delivery's new id. Nothing checks them
    /// for duplicates: the statement has no `ON CONFLICT`, and it sets `<schema>.fresh_unique_keys`
    /// for each of its rows before it goes in, so that the jobs table's duplicate-key trigger
    /// passes them by (queue migration 022; the trigger cost 26 µs a row), and back to 'off' once
    /// they are all in. A key that is taken after all fails the statement with a unique
    /// violation, so that no job is lost silently.
    static func insertFresh(_ schema: String) -> PQQuery {
        let fresh = "set_config('\(schema).fresh_unique_keys', 'on', true) IS NOT NULL"
        return PQQuery(
            "\(schema).enqueueFreshJobRows",
            "WITH inserted AS (\n" + insertFromArrays(schema, rowCondition: fresh) + "\nRETURNING 1\n)\n"
                + "SELECT set_config('\(schema).fresh_unique_keys', 'off', true) "
                + "FROM (SELECT count(*) FROM inserted) AS done")
    }

    static func manyBindings(_ jobs: [NewJob]) -> [any PQEncodable] {
        [
            PQArray(jobs.map(\.kind)), PQArray(jobs.map(\.payload)), PQArray(jobs.map(\.runAt)),
            PQArray(jobs.map(\.priority)), PQArray(jobs.map(\.maxAttempts)), PQArray(jobs.map(\.uniqueKey)),
            PQArray(jobs.map(\.concurrencyKey)), PQArray(jobs.map(\.traceContext)),
        ]
    }

    /// Inserts `jobs` in one statement (one round trip however many), in the connection's
    /// transaction if it is in one.
    /// - Returns: the jobs inserted, in no particular order: those whose unique key was already
    ///   queued are not among them.
    @discardableResult
    public func enqueue(_ jobs: [NewJob]) async throws -> [EnqueuedJob] {
        guard !jobs.isEmpty else { return [] }
        return try await connection.query(schema.statements.enqueueJobs, Self.manyBindings(jobs)).rows.map {
            EnqueuedJob(id: try $0.decode("id"), uniqueKey: try $0.decodeIfPresent("unique_key"))
        }
    }

    /// The statement that inserts `jobs` as ``enqueue(_:)-(_[NewJob])`` does, for a handler's
    /// ``JobOutcome``: the jobs are enqueued in the transaction that records the outcome, and only
    /// if it is recorded.
    public static func enqueueing(_ jobs: [NewJob], in schema: JobQueueSchema) -> BoundStatement {
        BoundStatement(schema.statements.enqueueJobs, manyBindings(jobs))
    }

    /// `jobs` as rows (``BoundStatement/row(of:_:since:)``) of one insert: the outcomes written
    /// together enqueue all their jobs in one statement, so the insert's triggers (the wake-up,
    /// the key rows, the hooks) run once for the batch instead of once per outcome. For a handler
    /// that enqueues on every run, such as a fan-out.
    public static func enqueueingRows(_ jobs: [NewJob], in schema: JobQueueSchema) -> [BoundStatement] {
        rows(jobs, of: schema.statements.enqueueJobRows)
    }

    /// As ``enqueueingRows(_:in:)``, for jobs whose unique keys cannot be taken: each names a row
    /// the same transaction inserts with a new id (a fan-out's deliveries). Their keys are not
    /// checked for duplicates, which saves the jobs table's per-row duplicate check (queue
    /// migration 022); a key that is taken all the same fails the write with a unique violation
    /// instead of being skipped. Jobs without a unique key gain nothing here.
    public static func enqueueingFreshRows(_ jobs: [NewJob], in schema: JobQueueSchema) -> [BoundStatement] {
        rows(jobs, of: schema.statements.enqueueFreshJobRows)
    }

    private static func rows(_ jobs: [NewJob], of query: PQQuery) -> [BoundStatement] {
        jobs.map { job in
            BoundStatement.row(
                of: query,
                [
                    job.kind, job.payload, job.runAt, job.priority, job.maxAttempts, job.uniqueKey, job.concurrencyKey,
                    job.traceContext,
                ])
        }
    }
}
