import Foundation
import LibPQ

/// The queue's history tables partitioned by time (`job_attempts`, and any table another module
/// registered with `<schema>.history_prepare`): their partitions, and their upkeep, which creates
/// partitions ahead and drops those past retention (`<schema>.create_history_partitions` and
/// `drop_history_partitions`, functions that run as the schema's owner).
public struct HistoryPartitions: Sendable {
    public let connection: PQConnection
    public let schema: JobQueueSchema

    public init(_ connection: PQConnection, schema: JobQueueSchema) {
        self.connection = connection
        self.schema = schema
    }

    /// One partition of a history table.
    public struct Partition: Sendable, Equatable {
        public let table: String
        public let name: String
        /// Nil for a partition that starts at MINVALUE (the table's rows from before partitioning).
        public let from: Date?
        /// Nil for a partition without an upper bound.
        public let to: Date?
        public let bytes: Int64
    }

    /// What one upkeep did: the partitions created and dropped (schema-qualified), and the fewest
    /// partitions entirely in the future that any history table has after it.
    public struct Upkeep: Sendable, Equatable {
        public var created: [String]
        public var dropped: [String]
        public var fewestFuturePartitions: Int
    }

    /// Every partition of every history table, by table and start.
    public func list() async throws -> [Partition] {
        let rows = try await connection.query(
            PQQuery(
                "\(schema.name).historyPartitions",
                """
                SELECT table_name, partition_name,
                       CASE WHEN from_at = '-infinity' THEN NULL ELSE from_at END AS from_at,
                       CASE WHEN to_at = 'infinity' THEN NULL ELSE to_at END AS to_at, bytes
                FROM \(schema.name).history_partitions p ORDER BY p.table_name, p.from_at
                """))
        return try rows.rows.map {
            Partition(
                table: try $0.decode("table_name"), name: try $0.decode("partition_name"),
                from: try $0.decodeIfPresent("from_at"), to: try $0.decodeIfPresent("to_at"),
                bytes: try $0.decode("bytes"))
        }
    }

    /// Creates the partitions missing up to `ahead` from now, each `length` long, then (unless
    /// `retention` is nil) detaches and drops the partitions whose rows are all older than
    /// `retention`.
    ///
    /// Creating runs in one transaction; replicas take turns on an advisory lock inside it. With
    /// `concurrently` (a connection of its own, not through a transaction pooler) and a role that
    /// owns the tables, each partition is detached with `DETACH PARTITION ... CONCURRENTLY`,
    /// which never blocks inserts, one replica at a time (a session advisory lock; another
    /// replica skips the drops meanwhile), and recorded first in `history_detaching` so that the
    /// next upkeep finishes what a killed connection left. Otherwise a plain DETACH takes ACCESS
    /// EXCLUSIVE on the parent for a moment, under the connection's `lock_timeout` (one that
    /// times out is tried again by the next upkeep), in the transaction that drops it.
    public func upkeep(
        length: Duration, ahead: Duration, retention: Duration?, concurrently: Bool = true
    ) async throws -> Upkeep {
        let created = try await connection.query(
            PQQuery(
                "\(schema.name).createHistoryPartitions",
                """
                SELECT p FROM \(schema.name).create_history_partitions(
                    make_interval(secs => $1::float8), make_interval(secs => $2::float8)) AS p
                """), [Self.seconds(length), Self.seconds(ahead)]
        ).rows.map { try $0.decode("p", as: String.self) }
        var dropped: [String] = []
        if let retention {
            if concurrently, try await ownsHistoryTables() {
                dropped = try await dropConcurrently(olderThan: retention)
            } else {
                dropped = try await drop(olderThan: retention, detach: true)
            }
        }
        return Upkeep(created: created, dropped: dropped, fewestFuturePartitions: try await fewestFuturePartitions())
    }

    /// Runs `drop_history_partitions`: with `detach`, detaches (plainly) and drops what is past
    /// retention; without, finishes the detaches recorded or pending and drops those tables.
    func drop(olderThan retention: Duration, detach: Bool) async throws -> [String] {
        try await connection.query(
            PQQuery(
                "\(schema.name).dropHistoryPartitions",
                """
                SELECT p FROM \(schema.name).drop_history_partitions(
                    now() - make_interval(secs => $1::float8), $2::boolean) AS p
                """), [Self.seconds(retention), detach]
        ).rows.map { try $0.decode("p", as: String.self) }
    }

    /// Whether this connection's role owns (or may act as the owner of) every history table.
    func ownsHistoryTables() async throws -> Bool {
        let row = try await connection.query(
            PQQuery(
                "\(schema.name).ownsHistoryTables",
                """
                SELECT coalesce(bool_and(pg_has_role(c.relowner, 'USAGE')), false) AS owns
                FROM \(schema.name).history_tables h
                JOIN pg_namespace n ON n.nspname = h.table_schema
                JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = h.table_name
                """)
        ).first
        return try row?.decode("owns") ?? false
    }

    private func dropConcurrently(olderThan retention: Duration) async throws -> [String] {
        let key = "\(schema.name).history_detach"
        let locked: Bool =
            try await connection.query(
                PQQuery("historyDetachLock", "SELECT pg_try_advisory_lock(hashtext($1)) AS locked"), [key]
            ).first?.decode("locked") ?? false
        guard locked else { return [] }
        do {
            var dropped = try await drop(olderThan: retention, detach: false)
            let due = try await connection.query(
                PQQuery(
                    "\(schema.name).historyPartitionsDue",
                    """
                    SELECT table_schema, table_name, partition_name,
                           format('ALTER TABLE %I.%I DETACH PARTITION %I.%I CONCURRENTLY',
                                  table_schema, table_name, table_schema, partition_name) AS detach
                    FROM \(schema.name).history_partitions
                    WHERE to_at <= now() - make_interval(secs => $1::float8) AND NOT detach_pending
                    ORDER BY to_at
                    """), [Self.seconds(retention)])
            for row in due.rows {
                try await connection.query(
                    PQQuery(
                        "\(schema.name).recordHistoryDetach",
                        """
                        INSERT INTO \(schema.name).history_detaching (table_schema, partition_name, table_name)
                        VALUES ($1, $2, $3) ON CONFLICT DO NOTHING
                        """),
                    [
                        try row.decode("table_schema", as: String.self),
                        try row.decode("partition_name", as: String.self),
                        try row.decode("table_name", as: String.self),
                    ])
                try await connection.execute(script: try row.decode("detach", as: String.self), name: "detachHistory")
                dropped += try await drop(olderThan: retention, detach: false)
            }
            try await unlock(key)
            return dropped
        } catch {
            try? await unlock(key)
            throw error
        }
    }

    private func unlock(_ key: String) async throws {
        try await connection.query(PQQuery("historyDetachUnlock", "SELECT pg_advisory_unlock(hashtext($1))"), [key])
    }

    /// The fewest partitions starting after now that any history table has (0 with none).
    public func fewestFuturePartitions() async throws -> Int {
        let row = try await connection.query(
            PQQuery(
                "\(schema.name).historyFuturePartitions",
                """
                SELECT coalesce(min(n), 0)::int AS n FROM (
                    SELECT count(p.partition_name) FILTER (WHERE p.from_at > now()) AS n
                    FROM \(schema.name).history_tables h
                    LEFT JOIN \(schema.name).history_partitions p USING (table_schema, table_name)
                    GROUP BY h.table_schema, h.table_name) t
                """)
        ).first
        return try row?.decode("n") ?? 0
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
