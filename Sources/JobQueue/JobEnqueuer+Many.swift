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
    /// Inserts many jobs in one statement, one array parameter per column; a job whose unique key
    /// is already queued (or taken by an earlier job of the same call) is skipped.
    static func insertMany(_ schema: String, returning: Bool = true) -> PQQuery {
        PQQuery(
            "\(schema)." + (returning ? "enqueueJobs" : "enqueueJobRows"),
            """
            INSERT INTO \(schema).jobs
                (kind, payload, run_at, priority, max_attempts, unique_key, concurrency_key, trace_context)
            SELECT kind, payload, coalesce(run_at, now()), priority, max_attempts, unique_key, concurrency_key,
                   trace_context
            FROM unnest($1::text[], $2::jsonb[], $3::timestamptz[], $4::smallint[], $5::integer[], $6::text[],
                        $7::text[], $8::text[])
                AS t(kind, payload, run_at, priority, max_attempts, unique_key, concurrency_key, trace_context)
            ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
            """ + (returning ? "\nRETURNING id, unique_key" : ""))
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
        jobs.map { job in
            BoundStatement.row(
                of: schema.statements.enqueueJobRows,
                [
                    job.kind, job.payload, job.runAt, job.priority, job.maxAttempts, job.uniqueKey, job.concurrencyKey,
                    job.traceContext,
                ])
        }
    }
}
