import Foundation
import LibPQ

/// The dead-letter table's operations: list, show, requeue and purge, for operators and consoles.
///
/// Every method runs on the connection given at `init`, one statement (or one batch) at a time;
/// none holds a transaction open between calls.
public struct DeadLetters: Sendable {
    public let connection: PQConnection
    /// The queue worked on.
    public let schema: JobQueueSchema

    public init(_ connection: PQConnection, schema: JobQueueSchema) {
        self.connection = connection
        self.schema = schema
    }

    /// Which dead letters an operation covers; nil fields match everything.
    public struct Filter: Sendable, Equatable {
        public var kind: String?
        /// Only those that died at or after this time.
        public var diedSince: Date?
        /// Only these dead letters (their own ids), e.g. those another module picked.
        public var ids: [Int64]?

        public init(kind: String? = nil, diedSince: Date? = nil, ids: [Int64]? = nil) {
            self.kind = kind
            self.diedSince = diedSince
            self.ids = ids
        }

        var bindings: [any PQEncodable] { [kind, diedSince, ids.map(PQArray.init)] }
    }

    /// The filter's condition on parameters `$1` (kind), `$2` (since) and `$3` (ids).
    static let matches = """
        ($1::text IS NULL OR kind = $1) AND ($2::timestamptz IS NULL OR dead_at >= $2)
        AND ($3::bigint[] IS NULL OR id = ANY($3))
        """

    static func list(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).listDeadLetters",
            """
            SELECT \(DeadLetter.columns) FROM \(schema).dead_letter_jobs
            WHERE \(matches) AND ($4 OR requeued_at IS NULL)
            ORDER BY dead_at DESC, id DESC LIMIT $5
            """)
    }

    /// Dead letters matching `filter`, newest first.
    /// - Parameter includeRequeued: also those already put back in the queue.
    public func list(
        _ filter: Filter = Filter(), includeRequeued: Bool = false, limit: Int = 100
    ) async throws
        -> [DeadLetter]
    {
        try await connection.query(schema.statements.listDeadLetters, filter.bindings + [includeRequeued, limit]).rows
            .map(DeadLetter.init)
    }

    static func get(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).showDeadLetter", "SELECT \(DeadLetter.columns) FROM \(schema).dead_letter_jobs WHERE id = $1")
    }

    /// The dead letter with this id (its own, not the job's), or nil.
    public func get(id: Int64) async throws -> DeadLetter? {
        try await connection.query(schema.statements.showDeadLetter, [id]).rows.first.map(DeadLetter.init)
    }

    static func attempts(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).deadLetterAttempts",
            """
            SELECT attempt, outcome, worker_id, started_at, finished_at, error FROM \(schema).job_attempts
            WHERE job_id = $1 ORDER BY attempt, finished_at
            """)
    }

    /// The recorded attempts of job `jobID` (a dead letter's ``DeadLetter/jobID``), in order.
    public func attempts(ofJob jobID: Int64) async throws -> [JobAttemptRecord] {
        try await connection.query(schema.statements.deadLetterAttempts, [jobID]).rows.map(JobAttemptRecord.init)
    }

    /// Why one dead letter could not be requeued.
    public enum RequeueError: Error, Sendable, Equatable, CustomStringConvertible {
        /// No dead letter has this id.
        case notFound(id: Int64)
        /// It was requeued before, or a job with its unique key is queued now; the database's words.
        case alreadyQueued(String)

        public var description: String {
            switch self {
            case .notFound(let id): "no dead letter with id \(id)"
            case .alreadyQueued(let message): message
            }
        }
    }

    static func requeue(_ schema: String) -> PQQuery {
        PQQuery("\(schema).requeueDeadLetter", "SELECT \(schema).requeue_dead_letter($1) AS id")
    }

    /// Puts one dead letter's job back in the queue with fresh attempts, and marks the dead
    /// letter requeued.
    /// - Returns: the new job's id.
    /// - Throws: ``RequeueError`` when there is no such dead letter or it cannot go back now.
    public func requeue(id: Int64) async throws -> Int64 {
        do {
            return try await connection.query(schema.statements.requeueDeadLetter, [id]).first?.decode("id") ?? 0
        } catch let error as PQError where error.sqlState == "P0002" {
            throw RequeueError.notFound(id: id)
        } catch let error as PQError where error.sqlState == "23505" {
            throw RequeueError.alreadyQueued(error.message)
        }
    }

    /// What ``requeueAll(_:batchSize:progress:)`` did.
    public struct RequeueSummary: Sendable, Equatable {
        /// Dead letters not yet requeued that matched when it started.
        public var matched: Int
        public var requeued: Int
        /// Skipped because a job with the same unique key is queued already.
        public var skippedAlreadyQueued: Int
    }

    static func countRequeueable(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).countRequeueable",
            "SELECT count(*) AS n FROM \(schema).dead_letter_jobs WHERE requeued_at IS NULL AND \(matches)")
    }

    // One batch per statement, in id order; a dead letter whose unique key is already queued
    // again is skipped instead of failing the batch.
    static func requeueBatch(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).requeueBatch",
            """
            WITH batch AS (
                SELECT id, unique_key FROM \(schema).dead_letter_jobs
                WHERE requeued_at IS NULL AND \(matches) AND id > $4
                ORDER BY id LIMIT $5
            )
            SELECT id,
                   CASE WHEN unique_key IS NOT NULL
                             AND EXISTS (SELECT 1 FROM \(schema).jobs j WHERE j.unique_key = batch.unique_key)
                        THEN NULL ELSE \(schema).requeue_dead_letter(id) END AS job_id
            FROM batch ORDER BY id
            """)
    }

    /// Requeues every dead letter matching `filter` that was not requeued yet, `batchSize` per
    /// transaction.
    /// - Parameter progress: called after each batch with the dead letters requeued so far and
    ///   the number that matched.
    public func requeueAll(
        _ filter: Filter, batchSize: Int = 500, progress: (_ requeued: Int, _ matched: Int) -> Void = { _, _ in }
    ) async throws -> RequeueSummary {
        let matched: Int =
            try await connection.query(schema.statements.countRequeueable, filter.bindings).first?.decode("n") ?? 0
        var summary = RequeueSummary(matched: matched, requeued: 0, skippedAlreadyQueued: 0)
        guard matched > 0 else { return summary }
        var lastID: Int64 = 0
        while true {
            let result = try await connection.query(
                schema.statements.requeueBatch, filter.bindings + [lastID, batchSize])
            if result.isEmpty { return summary }
            for row in result.rows {
                lastID = try row.decode("id")
                if try row.decodeIfPresent("job_id", as: Int64.self) == nil {
                    summary.skippedAlreadyQueued += 1
                } else {
                    summary.requeued += 1
                }
            }
            progress(summary.requeued, matched)
        }
    }

    static func purge(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).purgeDeadLetters",
            """
            DELETE FROM \(schema).dead_letter_jobs WHERE id IN (
                SELECT id FROM \(schema).dead_letter_jobs
                WHERE dead_at < $1 AND ($2::text IS NULL OR kind = $2) LIMIT $3)
            """)
    }

    /// Deletes dead letters that died before `cutoff` (of `kind`, when given), in batches.
    /// - Returns: the dead letters deleted.
    public func purge(
        diedBefore cutoff: Date, kind: String? = nil, batchSize: Int = 5000, progress: (Int) -> Void = { _ in }
    )
        async throws -> Int
    {
        try await connection.deleteInBatches(
            schema.statements.purgeDeadLetters, [cutoff, kind], batchSize: batchSize, progress: progress)
    }
}
