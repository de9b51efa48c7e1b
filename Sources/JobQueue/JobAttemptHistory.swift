import Foundation
import LibPQ

/// The attempts history (one row per finished attempt of any job), kept until pruned by age.
public struct JobAttemptHistory: Sendable {
    public let connection: PostgresConnection

    public init(_ connection: PostgresConnection) {
        self.connection = connection
    }

    static let prune = PostgresQuery(
        "pruneJobAttempts",
        """
        DELETE FROM webhook_worker.job_attempts WHERE id IN (
            SELECT id FROM webhook_worker.job_attempts WHERE finished_at < $1 LIMIT $2)
        """)

    /// Deletes attempts that finished before `cutoff`, in batches.
    /// - Returns: the attempts deleted.
    public func prune(
        finishedBefore cutoff: Date, batchSize: Int = 5000, progress: (Int) -> Void = { _ in }
    ) async throws
        -> Int
    {
        try await connection.deleteInBatches(Self.prune, [cutoff], batchSize: batchSize, progress: progress)
    }
}
