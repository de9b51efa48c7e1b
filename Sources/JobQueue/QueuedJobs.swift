import Foundation
import LibPQ

/// Questions and operator actions about the jobs in the queue, asked by what they carry (a
/// payload key's value) rather than by id: so that code outside the queue never names its
/// tables.
public struct QueuedJobs: Sendable {
    public let connection: PQConnection
    /// The queue worked on.
    public let schema: JobQueueSchema

    public init(_ connection: PQConnection, schema: JobQueueSchema) {
        self.connection = connection
        self.schema = schema
    }

    static func traceContext(_ schema: String) -> PQQuery {
        PQQuery("\(schema).jobTraceContext", "SELECT trace_context FROM \(schema).jobs WHERE id = $1")
    }

    /// The `trace_context` stored with job `id`, or nil (none, or no such job in the queue).
    public func traceContext(ofJob id: Int64) async throws -> String? {
        try await connection.query(schema.statements.jobTraceContext, [id]).first?.decodeIfPresent(
            "trace_context", as: String.self)
    }

    static func isQueued(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).jobIsQueued",
            """
            SELECT EXISTS (SELECT 1 FROM \(schema).jobs WHERE kind = $1 AND payload ->> $2 = $3) AS queued
            """)
    }

    /// Whether a job of `kind` whose payload's `key` is `value` is in the queue, in any state
    /// (waiting, running, snoozed).
    public func isQueued(kind: String, payloadKey key: String, equals value: String) async throws -> Bool {
        try await connection.query(schema.statements.jobIsQueued, [kind, key, value]).first?.decode(
            "queued", as: Bool.self) ?? false
    }

    static func isQueuedByKey(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).jobIsQueuedByKey",
            "SELECT EXISTS (SELECT 1 FROM \(schema).jobs WHERE unique_key = $1) AS queued")
    }

    /// Whether the job with unique key `key` is in the queue, in any state: while it is, an
    /// enqueue with that key is skipped.
    public func isQueued(uniqueKey key: String) async throws -> Bool {
        try await connection.query(schema.statements.jobIsQueuedByKey, [key]).first?.decode(
            "queued", as: Bool.self) ?? false
    }

    static func queuedUniqueKeys(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).queuedUniqueKeys",
            "SELECT unique_key FROM \(schema).jobs WHERE unique_key = ANY ($1::text[])")
    }

    /// Which of `keys` are the unique keys of jobs in the queue, in any state (waiting, running,
    /// snoozed): one statement for many, as a dry run of a batch enqueue asks.
    public func queued(uniqueKeys keys: [String]) async throws -> Set<String> {
        guard !keys.isEmpty else { return [] }
        return Set(
            try await connection.query(schema.statements.queuedUniqueKeys, [PQArray(keys)]).rows.map {
                try $0.decode("unique_key", as: String.self)
            })
    }

    static func cancelWaiting(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).cancelWaitingJobs",
            """
            WITH removed AS (
                DELETE FROM \(schema).jobs
                WHERE kind = $1 AND state = 'available' AND payload ->> $2 = ANY ($3::text[])
                RETURNING id, kind, attempt
            ), recorded AS (
                INSERT INTO \(schema).job_attempts
                    (job_id, kind, attempt, worker_id, started_at, finished_at, outcome, error)
                -- The attempt that would have run next: the job's earlier numbers are taken.
                SELECT id, kind, attempt + 1, $4, now(), now(), 'cancelled', $5 FROM removed
            )
            SELECT count(*) AS removed FROM removed
            """)
    }

    /// Takes the waiting (not running) jobs of `kind` whose payload's `key` is one of `values` out
    /// of the queue, each recorded as a `cancelled` attempt by `actor` with `reason` as its error.
    /// A running job is left to finish.
    /// - Returns: the jobs taken out.
    @discardableResult
    public func cancelWaiting(
        kind: String, payloadKey key: String, in values: [String], actor: String, reason: String
    ) async throws -> Int {
        guard !values.isEmpty else { return 0 }
        return try await connection.query(
            schema.statements.cancelWaitingJobs, [kind, key, PQArray(values), actor, reason]
        ).first?.decode("removed") ?? 0
    }
}
