import Foundation
import LibPQ

/// Pausing a kind of job across all replicas: while paused, no replica claims it (each notices
/// within a poll interval); jobs already running finish.
public struct PausedKinds: Sendable {
    public let connection: PQConnection
    /// The queue worked on.
    public let schema: JobQueueSchema

    public init(_ connection: PQConnection, schema: JobQueueSchema) {
        self.connection = connection
        self.schema = schema
    }

    /// A paused kind: since when, and by whom.
    public struct Pause: Sendable, Equatable {
        public let kind: String
        public let pausedAt: Date
        public let pausedBy: String?
    }

    static func pause(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).pauseKind",
            "INSERT INTO \(schema).paused_kinds (kind, paused_by) VALUES ($1, $2) ON CONFLICT (kind) DO NOTHING")
    }

    /// Pauses `kind`, recording `actor` as who did it.
    /// - Returns: false when it was paused already (the first pause is kept).
    @discardableResult
    public func pause(_ kind: String, by actor: String) async throws -> Bool {
        try await connection.query(schema.statements.pauseKind, [kind, actor]).affectedRows > 0
    }

    static func resume(_ schema: String) -> PQQuery {
        PQQuery("\(schema).resumeKind", "DELETE FROM \(schema).paused_kinds WHERE kind = $1")
    }

    /// Lets replicas claim `kind` again.
    /// - Returns: false when it was not paused.
    @discardableResult
    public func resume(_ kind: String) async throws -> Bool {
        try await connection.query(schema.statements.resumeKind, [kind]).affectedRows > 0
    }

    static func list(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).statsPaused", "SELECT kind, paused_at, paused_by FROM \(schema).paused_kinds ORDER BY kind")
    }

    /// The kinds paused now, by kind.
    public func list() async throws -> [Pause] {
        try await connection.query(schema.statements.statsPaused).rows.map { row in
            Pause(
                kind: try row.decode("kind"), pausedAt: try row.decode("paused_at"),
                pausedBy: try row.decodeIfPresent("paused_by"))
        }
    }
}
