import Foundation
import LibPQ

extension DeadLetters {
    static func requeueableByPayload(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).requeueableDeadLettersByPayload",
            """
            SELECT id, payload ->> $2 AS value FROM \(schema).dead_letter_jobs
            WHERE requeued_at IS NULL AND kind = $1 ORDER BY id
            """)
    }

    /// The dead letters of `kind` not yet requeued, by id, each with its payload's `key` (nil
    /// when the payload has none): to pick those of one customer, say, by what their payload
    /// refers to, and pass them to ``requeueAll(_:batchSize:progress:)`` as ``Filter/ids``.
    public func requeueable(kind: String, payloadKey key: String) async throws -> [(id: Int64, value: String?)] {
        try await connection.query(schema.statements.requeueableDeadLettersByPayload, [kind, key]).rows.map {
            (id: try $0.decode("id"), value: try $0.decodeIfPresent("value"))
        }
    }
}
