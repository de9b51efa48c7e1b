import Foundation
import LibPQ

/// The attempts history (one row per finished attempt of any job), kept until pruned by age.
public struct JobAttemptHistory: Sendable {
    public let connection: PQConnection
    /// The queue worked on.
    public let schema: JobQueueSchema

    public init(_ connection: PQConnection, schema: JobQueueSchema) {
        self.connection = connection
        self.schema = schema
    }

    static func prune(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).pruneJobAttempts",
            """
            DELETE FROM \(schema).job_attempts WHERE id IN (
                SELECT id FROM \(schema).job_attempts WHERE finished_at < $1 LIMIT $2)
            """)
    }

    /// Deletes attempts that finished before `cutoff`, in batches.
    /// - Returns: the attempts deleted.
    public func prune(
        finishedBefore cutoff: Date, batchSize: Int = 5000, progress: (Int) -> Void = { _ in }
    ) async throws
        -> Int
    {
        try await connection.deleteInBatches(
            schema.statements.pruneJobAttempts, [cutoff], batchSize: batchSize, progress: progress)
    }
}
