import Foundation
import LibPQ

extension DeadLetters {
    static func listByReason(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).listDeadLettersByReason",
            """
            SELECT \(DeadLetter.columns) FROM \(schema).dead_letter_jobs
            WHERE \(matches) AND ($4 OR requeued_at IS NULL) AND ($5::text IS NULL OR reason = $5)
            ORDER BY dead_at DESC, id DESC LIMIT $6
            """)
    }

    /// Dead letters matching `filter` and, when given, of `reason` (`attempts_exhausted`,
    /// `permanent_failure`, `endpoint_disabled`), newest first.
    public func list(
        _ filter: Filter, reason: String?, includeRequeued: Bool = false, limit: Int = 100
    ) async throws -> [DeadLetter] {
        try await connection.query(
            schema.statements.listDeadLettersByReason, filter.bindings + [includeRequeued, reason, limit]
        ).rows.map(DeadLetter.init)
    }

    static func requeueableIDs(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).requeueableDeadLetterIDs",
            """
            SELECT id FROM \(schema).dead_letter_jobs
            WHERE requeued_at IS NULL AND \(matches) AND ($4::text IS NULL OR reason = $4) ORDER BY id
            """)
    }

    /// The ids of the dead letters not yet requeued that match `filter` and `reason`: pass them to
    /// ``requeueAll(_:batchSize:progress:)`` as ``Filter/ids`` to requeue by reason.
    public func requeueableIDs(_ filter: Filter, reason: String?) async throws -> [Int64] {
        try await connection.query(schema.statements.requeueableDeadLetterIDs, filter.bindings + [reason]).rows.map {
            try $0.decode("id")
        }
    }

    static func purgeMatching(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).purgeMatchingDeadLetters",
            """
            DELETE FROM \(schema).dead_letter_jobs WHERE id IN (
                SELECT id FROM \(schema).dead_letter_jobs
                WHERE \(matches) AND ($4 OR requeued_at IS NULL) AND ($5::text IS NULL OR reason = $5) AND dead_at < $6
                LIMIT $7)
            """)
    }

    /// Deletes, in batches, the dead letters that ``list(_:reason:includeRequeued:limit:)`` lists
    /// with the same arguments (all of them, not a page) and that died before `cutoff`: a console
    /// purges what it shows.
    /// - Returns: the dead letters deleted.
    public func purge(
        _ filter: Filter, reason: String?, includeRequeued: Bool, diedBefore cutoff: Date, batchSize: Int = 5000
    ) async throws -> Int {
        try await connection.deleteInBatches(
            schema.statements.purgeMatchingDeadLetters, filter.bindings + [includeRequeued, reason, cutoff],
            batchSize: batchSize)
    }

    static func reasons(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).deadLetterReasons", "SELECT DISTINCT reason FROM \(schema).dead_letter_jobs ORDER BY reason")
    }

    /// The reasons present in the table, for a filter's choices.
    public func reasons() async throws -> [String] {
        try await connection.query(schema.statements.deadLetterReasons).rows.map { try $0.decode("reason") }
    }
}
