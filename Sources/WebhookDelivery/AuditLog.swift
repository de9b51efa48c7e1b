import Foundation
import LibPQ

/// The console's audit trail (`webhook_worker.console_audit`): who did what, to what, and how it
/// ended. Consoles record every action through it; nothing secret belongs in any field.
public struct AuditLog: Sendable {
    public let connection: PQConnection

    public init(_ connection: PQConnection) {
        self.connection = connection
    }

    /// One recorded action.
    public struct Entry: Sendable, Equatable {
        public let id: Int64
        public let at: Date
        public let actor: String
        public let action: String
        public let target: String
        /// The detail object's JSON text.
        public let detail: String
        public let outcome: String
    }

    static let record = PQQuery(
        "recordAudit",
        """
        INSERT INTO webhook_worker.console_audit (actor, action, target, detail, outcome)
        VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id
        """)

    /// Records one action.
    /// - Parameter detail: string fields stored as a JSON object (filters, counts, the new job's id).
    /// - Returns: the entry's id.
    @discardableResult
    public func record(
        actor: String, action: String, target: String, detail: [String: String] = [:], outcome: String
    ) async throws -> Int64 {
        let data = try JSONSerialization.data(withJSONObject: detail, options: [.sortedKeys])
        let json = String(decoding: data, as: UTF8.self)
        return try await connection.query(Self.record, [actor, action, target, json, outcome]).first?.decode("id") ?? 0
    }

    static let prune = PQQuery(
        "pruneAudit",
        """
        DELETE FROM webhook_worker.console_audit WHERE id IN (
            SELECT id FROM webhook_worker.console_audit WHERE at < $1 LIMIT $2)
        """)

    /// Deletes entries recorded before `cutoff`, in batches (`prune --audit-older-than`).
    /// - Returns: the entries deleted.
    public func prune(
        before cutoff: Date, batchSize: Int = 5000, progress: (Int) -> Void = { _ in }
    ) async throws
        -> Int
    {
        try await connection.deleteInBatches(Self.prune, [cutoff], batchSize: batchSize, progress: progress)
    }

    static let recent = PQQuery(
        "recentAudit",
        """
        SELECT id, at, actor, action, target, detail::text AS detail, outcome FROM webhook_worker.console_audit
        WHERE ($1::text IS NULL OR actor = $1) ORDER BY at DESC, id DESC LIMIT $2
        """)

    /// The latest entries, newest first (of `actor`, when given).
    public func recent(actor: String? = nil, limit: Int = 100) async throws -> [Entry] {
        try await connection.query(Self.recent, [actor, limit]).rows.map { row in
            Entry(
                id: try row.decode("id"), at: try row.decode("at"), actor: try row.decode("actor"),
                action: try row.decode("action"), target: try row.decode("target"), detail: try row.decode("detail"),
                outcome: try row.decode("outcome"))
        }
    }
}
