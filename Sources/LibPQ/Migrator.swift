import Logging

/// One numbered SQL file.
public struct Migration: Sendable, Hashable {
    public let version: Int
    public let name: String
    public let sql: String
    /// The checksums of earlier texts of this migration that databases may have recorded: the
    /// same statements, since rearranged (e.g. split between the modules that own them). A
    /// database that applied one of these is up to date with this text and gets no warning.
    public let formerChecksums: Set<String>

    public init(version: Int, name: String, sql: String, formerChecksums: Set<String> = []) {
        self.version = version
        self.name = name
        self.sql = sql
        self.formerChecksums = formerChecksums
    }

    /// Whether a database that recorded `checksum` for this version applied this text (or an
    /// equivalent former one).
    public func matches(checksum: String) -> Bool {
        checksum == self.checksum || formerChecksums.contains(checksum)
    }

    /// FNV-1a of the text, recorded so that an edited, already-applied file is noticed.
    public var checksum: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in sql.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return String(hash, radix: 16)
    }
}

/// Applies migrations in order, each in its own transaction under a transaction-level advisory
/// lock (`pg_advisory_xact_lock`), so that replicas starting together take turns: each one
/// re-reads what is applied once it holds the lock. No session state, so it is correct through a
/// transaction pooler too (a session lock could be taken on one server connection and released
/// on another). Applied versions are recorded in
/// `<schema>.schema_migrations`; applying them again changes nothing.
public struct Migrator: Sendable {
    public let schema: String
    public let migrations: [Migration]
    /// The advisory lock's key; constant so every replica and `migrate` run contends for it.
    public static let lockKey: Int64 = 0x7768_6b5f_6d69_67  // "whk_mig"

    public init(schema: String, migrations: [Migration]) {
        precondition(
            schema.first.map { $0.isLetter || $0 == "_" } == true
                && schema.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") },
            "schema must be a plain identifier")
        self.schema = schema
        self.migrations = migrations.sorted { $0.version < $1.version }
    }

    /// Applies what is missing and returns the versions applied by this call.
    @discardableResult
    public func migrate(_ connection: PostgresConnection, logger: Logger) async throws -> [Int] {
        // Up to date: change nothing and take no lock, so a replica whose role may not CREATE
        // in the database starts fine once the schema exists.
        let present = try await appliedVersions(connection)
        if migrations.allSatisfy({ present[$0.version] != nil }) {
            warnAboutChanged(present, logger: logger)
            return []
        }
        return try await apply(connection, logger: logger)
    }

    /// Warns once per migration whose text changed since a database recorded it: that database
    /// did not run the new text, and never will.
    func warnAboutChanged(_ present: [Int: String], logger: Logger) {
        for migration in migrations {
            guard let checksum = present[migration.version], !migration.matches(checksum: checksum) else { continue }
            logger.warning(
                "an applied migration has changed since it was applied; it is not run again",
                metadata: ["migration": "\(migration.name)"])
        }
    }

    static let lock = PostgresQuery("migrationLock", "SELECT pg_advisory_xact_lock($1::bigint)")

    /// The versions already recorded, with their checksums.
    public func appliedVersions(_ connection: PostgresConnection) async throws -> [Int: String] {
        let exists = try await connection.query(
            PostgresQuery("migrationTableExists", "SELECT to_regclass($1) IS NOT NULL AS present"),
            ["\(schema).schema_migrations"])
        guard try exists.first?.decode("present", as: Bool.self) == true else { return [:] }
        let rows = try await connection.query(
            PostgresQuery("migrationVersions", "SELECT version, checksum FROM \(schema).schema_migrations"))
        var versions: [Int: String] = [:]
        for row in rows.rows { versions[try row.decode("version")] = try row.decode("checksum") }
        return versions
    }

    private func apply(_ connection: PostgresConnection, logger: Logger) async throws -> [Int] {
        try await connection.transaction { connection in
            try await connection.query(Self.lock, [Self.lockKey])
            try await connection.execute(
                script: """
                    CREATE SCHEMA IF NOT EXISTS \(schema);
                    CREATE TABLE IF NOT EXISTS \(schema).schema_migrations (
                        version integer PRIMARY KEY,
                        name text NOT NULL,
                        checksum text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    );
                    """, name: "migrationBootstrap")
        }
        var newlyApplied: [Int] = []
        for migration in migrations {
            let ran = try await connection.transaction { connection -> Bool in
                try await connection.query(Self.lock, [Self.lockKey])
                if let checksum = try await appliedVersions(connection)[migration.version] {
                    if !migration.matches(checksum: checksum) {
                        logger.warning(
                            "an applied migration has changed since it was applied; it is not run again",
                            metadata: ["migration": "\(migration.name)"])
                    }
                    return false
                }
                try await connection.execute(script: migration.sql, name: "migration \(migration.name)")
                try await connection.query(
                    PostgresQuery(
                        "migrationRecord",
                        "INSERT INTO \(schema).schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"),
                    [migration.version, migration.name, migration.checksum])
                return true
            }
            guard ran else { continue }
            logger.info("applied migration", metadata: ["migration": "\(migration.name)"])
            newlyApplied.append(migration.version)
        }
        return newlyApplied
    }
}
