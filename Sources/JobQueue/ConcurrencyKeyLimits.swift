import Foundation
import LibPQ

/// Limits of single concurrency keys, held in the database so that every replica's claim obeys
/// them: a key with a limit of its own runs at most that many jobs at once across all replicas,
/// instead of its kind's limit (``JobHandler/concurrencyLimit``, passed by each replica). Raising
/// or removing a key's limit wakes the key, so a key parked as full under the old limit runs
/// again at once; lowering it takes effect as its running jobs end (nothing running is stopped).
///
/// The claim and the reconciler read the limit under the key's lock, where they count its running
/// jobs (`sql/job_queue/010_concurrency_key_limits.sql`).
///
/// A key may also be ordered (``setOrdered(kind:concurrencyKey:_:)``,
/// `sql/job_queue/018_ordered_concurrency_keys.sql`): its jobs then run one at a time, oldest
/// (lowest id) first, whatever its limit, and a retrying oldest job holds the later ones.
public struct ConcurrencyKeyLimits: Sendable {
    public let connection: PQConnection
    /// The queue worked on.
    public let schema: JobQueueSchema

    public init(_ connection: PQConnection, schema: JobQueueSchema) {
        self.connection = connection
        self.schema = schema
    }

    /// One key's own limit.
    public struct Limit: Sendable, Equatable {
        public let kind: String
        public let concurrencyKey: String
        /// Nil only on an ordered key without a limit of its own (the kind's applies, capped at 1).
        public let maxRunning: Int?
        /// One job at a time, oldest first.
        public let ordered: Bool
        public let updatedAt: Date
    }

    static func set(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).setConcurrencyKeyLimit",
            "SELECT \(schema).set_concurrency_key_limit($1, $2, $3::int) AS previous")
    }

    static func list(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).listConcurrencyKeyLimits",
            """
            SELECT kind, concurrency_key, max_running, ordered, updated_at FROM \(schema).concurrency_key_limits
            WHERE kind = $1 AND ($2::text IS NULL OR concurrency_key = $2)
            ORDER BY concurrency_key
            """)
    }

    static func setOrdered(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).setConcurrencyKeyOrdered",
            "SELECT \(schema).set_concurrency_key_ordered($1, $2, $3::boolean) AS previous")
    }

    static func isOrdered(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).concurrencyKeyIsOrdered",
            "SELECT \(schema).concurrency_key_is_ordered($1, $2) AS ordered")
    }

    /// Makes the key `concurrencyKey` of `kind` ordered (its jobs run one at a time, in id order;
    /// a retrying oldest job holds the others) or not. Turning it off wakes the key; turning it on
    /// applies from the key's next claim (a job already running goes on).
    /// - Returns: whether it was ordered before.
    @discardableResult
    public func setOrdered(kind: String, concurrencyKey: String, _ ordered: Bool) async throws -> Bool {
        try await connection.query(schema.statements.setConcurrencyKeyOrdered, [kind, concurrencyKey, ordered])
            .first?.decodeIfPresent("previous") ?? false
    }

    /// Whether the key `concurrencyKey` of `kind` is ordered.
    public func isOrdered(kind: String, concurrencyKey: String) async throws -> Bool {
        try await connection.query(schema.statements.concurrencyKeyIsOrdered, [kind, concurrencyKey])
            .first?.decodeIfPresent("ordered") ?? false
    }

    /// Gives the key `concurrencyKey` of `kind` a limit of its own (0 or more), or with nil takes
    /// it away (the kind's limit applies again).
    /// - Returns: the limit it had of its own before, if any.
    @discardableResult
    public func set(kind: String, concurrencyKey: String, maxRunning: Int?) async throws -> Int? {
        try await connection.query(schema.statements.setConcurrencyKeyLimit, [kind, concurrencyKey, maxRunning])
            .first?.decodeIfPresent("previous")
    }

    /// The same change as ``set(kind:concurrencyKey:maxRunning:)``, as a statement of a job's
    /// outcome (it commits with the outcome, or not at all).
    public static func setting(
        kind: String, concurrencyKey: String, maxRunning: Int?, in schema: JobQueueSchema
    ) -> BoundStatement {
        BoundStatement(schema.statements.setConcurrencyKeyLimit, [kind, concurrencyKey, maxRunning])
    }

    /// The keys of `kind` with a limit of their own (or only `concurrencyKey`'s), by key.
    public func list(kind: String, concurrencyKey: String? = nil) async throws -> [Limit] {
        try await connection.query(schema.statements.listConcurrencyKeyLimits, [kind, concurrencyKey]).rows.map {
            row in
            Limit(
                kind: try row.decode("kind"), concurrencyKey: try row.decode("concurrency_key"),
                maxRunning: try row.decodeIfPresent("max_running"), ordered: try row.decode("ordered"),
                updatedAt: try row.decode("updated_at"))
        }
    }
}
