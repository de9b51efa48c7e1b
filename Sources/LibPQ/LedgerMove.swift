import Logging

/// Moves a ledger from before lines over, once. Until each owner numbered its own migrations,
/// the owners of one schema shared one version sequence, and the ledger recorded one row per
/// version (`version` its key), some versions standing for a part of each owner's. Each owner
/// lists the shared versions its migrations had, in order (``formerVersions``); the move replaces
/// every recorded row by the migrations its version stands for now, with their names and
/// checksums and the row's `applied_at`, in the transaction that holds the migrator's lock, and
/// a ledger already keyed by owner is left alone. A recorded version that no owner lists stops
/// the move (it was written by a later release), and so the migration.
public struct LedgerMove: Sendable {
    /// Per owner, the shared version of its migration 1, 2, 3, ...
    public let formerVersions: [String: [Int]]

    public init(formerVersions: [String: [Int]] = [:]) {
        self.formerVersions = formerVersions
    }

    /// Merged with another owner's.
    public func merging(_ other: LedgerMove) -> LedgerMove {
        LedgerMove(formerVersions: formerVersions.merging(other.formerVersions) { $1 })
    }

    /// Why a ledger could not be moved.
    public struct Unmapped: Error, CustomStringConvertible {
        public let description: String
    }

    func move(
        schema: String, migrations: [Migration], on connection: PQConnection, logger: Logger
    )
        async throws
    {
        var rows: [(former: Int, migration: Migration)] = []
        for (owner, versions) in formerVersions {
            let line = migrations.filter { $0.owner == owner }
            for (former, migration) in zip(versions, line) { rows.append((former, migration)) }
        }
        let recorded = try await connection.query(
            PQQuery("migrationFormerVersions", "SELECT version FROM \(schema).schema_migrations ORDER BY version")
        ).rows.map { try $0.decode("version", as: Int.self) }
        let known = Set(rows.map { $0.former })
        if let unknown = recorded.first(where: { !known.contains($0) }) {
            throw Unmapped(
                description: "\(schema).schema_migrations records version \(unknown), which no owner's migrations had; "
                    + "it was written by a later release")
        }
        try await connection.execute(
            script: """
                ALTER TABLE \(schema).schema_migrations
                    DROP CONSTRAINT schema_migrations_pkey,
                    ADD COLUMN owner text;
                """, name: "migrationLedgerMoveAlter")
        try await connection.query(
            PQQuery(
                "migrationLedgerMove",
                """
                INSERT INTO \(schema).schema_migrations (owner, version, name, checksum, applied_at)
                SELECT m.owner, m.version, m.name, m.checksum, old.applied_at
                FROM \(schema).schema_migrations old
                JOIN unnest($1::int[], $2::text[], $3::int[], $4::text[], $5::text[])
                    AS m(former, owner, version, name, checksum) ON m.former = old.version
                WHERE old.owner IS NULL
                """),
            [
                PQArray(rows.map { $0.former }), PQArray(rows.map { $0.migration.owner }),
                PQArray(rows.map { $0.migration.version }), PQArray(rows.map { $0.migration.name }),
                PQArray(rows.map { $0.migration.checksum }),
            ])
        try await connection.execute(
            script: """
                DELETE FROM \(schema).schema_migrations WHERE owner IS NULL;
                ALTER TABLE \(schema).schema_migrations
                    ALTER COLUMN owner SET NOT NULL,
                    ADD PRIMARY KEY (owner, version);
                """, name: "migrationLedgerMoveKey")
        logger.notice(
            "moved the migration ledger to one line per owner",
            metadata: ["schema": "\(schema)", "versions": "\(recorded.count)"])
    }
}
