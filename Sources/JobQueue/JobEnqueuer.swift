import Foundation
import LibPQ

/// Puts jobs in the queue: the one place in Swift that inserts into the jobs table.
///
/// An insert wakes the workers by itself (a statement-level trigger sends `NOTIFY`), so a
/// program with no worker in it can enqueue, and so can SQL (`INSERT` or `enqueue()`). Run it on
/// a connection inside a transaction to enqueue atomically with your own writes:
///
/// ```swift
/// try await connection.transaction { connection in
///     try await connection.query(recordSignup, [userID])
///     try await JobEnqueuer(connection, schema: queue).enqueue(
///         NewJob(kind: "email.welcome", encoding: WelcomeEmail(userID: userID)))
/// }
/// ```
public struct JobEnqueuer: Sendable {
    public let connection: PQConnection
    /// The queue worked on.
    public let schema: JobQueueSchema

    public init(_ connection: PQConnection, schema: JobQueueSchema) {
        self.connection = connection
        self.schema = schema
    }

    /// Inserts `copies` rows of one job; a row whose unique key is already queued is skipped.
    static func insert(_ schema: String, returning: Bool) -> PQQuery {
        PQQuery(
            "\(schema)." + (returning ? "enqueueJob" : "enqueueJobCopies"),
            """
            INSERT INTO \(schema).jobs
                (kind, payload, run_at, priority, max_attempts, unique_key, concurrency_key, trace_context)
            SELECT $1, $2::jsonb, coalesce($3::timestamptz, now()), $4::smallint, $5::integer, $6, $7, $9
            FROM generate_series(1, $8::integer)
            ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
            """ + (returning ? "\nRETURNING id" : ""))
    }

    private func bindings(_ job: NewJob, copies: Int) -> [any PQEncodable] {
        [
            job.kind, job.payload, job.runAt, job.priority, job.maxAttempts, job.uniqueKey, job.concurrencyKey, copies,
            job.traceContext,
        ]
    }

    /// Inserts `job`.
    /// - Returns: the new job's id, or nil when a job with the same unique key is still queued.
    @discardableResult
    public func enqueue(_ job: NewJob) async throws -> Int64? {
        try await connection.query(schema.statements.enqueueJob, bindings(job, copies: 1)).first?.decode("id")
    }

    /// Inserts `count` copies of `job` in one statement (for load and health checks).
    @discardableResult
    /// - Returns: the jobs inserted: `count`, or 1 or 0 when `job` has a unique key.
    public func enqueue(_ job: NewJob, copies count: Int) async throws -> Int {
        try await connection.query(schema.statements.enqueueJobCopies, bindings(job, copies: count)).affectedRows
    }
}
