import Logging

/// One numbered SQL file of one owner.
public struct Migration: Sendable, Hashable {
    /// Whose line it belongs to (`job_queue`, `webhook_delivery`): each owner numbers its own
    /// migrations 1, 2, 3, ... and the ledger records them by (owner, version).
    public let owner: String
    public let version: Int
    public let name: String
    public let sql: String

    public init(owner: String, version: Int, name: String, sql: String) {
        self.owner = owner
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// `owner/name`, as logs and messages name a migration.
    public var id: String { "\(owner)/\(name)" }

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
/// on another). Applied migrations are recorded in `<schema>.schema_migrations` by owner and
/// version; applying them again changes nothing.
///
/// The list may hold the lines of several owners, each numbered on its own: a library's line
/// comes before the lines of the programs that build on its objects, and each line is applied
/// in its order. A ledger from before lines (one shared version sequence, `version` its key) is
/// moved over once; see ``LedgerMove``.
public struct Migrator: Sendable {
    public let schema: String
    public let migrations: [Migration]
    /// How a ledger from before lines maps to the lines.
    public let formerLedger: LedgerMove
    /// The advisory lock's key; constant so every replica and `migrate` run contends for it.
    public static let lockKey: Int64 = 0x7768_6b5f_6d69_67  // "whk_mig"

    /// A migration as the ledger identifies it.
    struct Key: Hashable {
        let owner: String
        let version: Int
    }

    public init(schema: String, migrations: [Migration], formerLedger: LedgerMove = LedgerMove()) {
        precondition(
            schema.first.map { $0.isLetter || $0 == "_" } == true
                && schema.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") },
            "schema must be a plain identifier")
        var seen: [String: Int] = [:]
        for migration in migrations {
            precondition(
                migration.version > seen[migration.owner, default: 0],
                "\(migration.id): versions of one owner must increase")
            seen[migration.owner] = migration.version
        }
        self.schema = schema
        self.migrations = migrations
        self.formerLedger = formerLedger
    }

    /// Applies what is missing and returns the migrations applied by this call, in order.
    @discardableResult
    public func migrate(_ connection: PQConnection, logger: Logger) async throws -> [Migration] {
        // Up to date: change nothing and take no lock, so a replica whose role may not CREATE
        // in the database starts fine once the schema exists.
        if try await ledgerFormat(connection) == .lines {
            let present = try await applied(connection)
            if migrations.allSatisfy({ present[Key(owner: $0.owner, version: $0.version)] != nil }) {
                warnAboutChanged(present, logger: logger)
                return []
            }
        }
        return try await apply(connection, logger: logger)
    }

    /// Warns once per migration whose text changed since a database recorded it: that database
    /// did not run the new text, and never will.
    func warnAboutChanged(_ present: [Key: String], logger: Logger) {
        for migration in migrations {
            guard let checksum = present[Key(owner: migration.owner, version: migration.version)],
                checksum != migration.checksum
            else { continue }
            logger.warning(
                "an applied migration has changed since it was applied; it is not run again",
                metadata: ["migration": "\(migration.id)"])
        }
    }

    static let lock = PQQuery("migrationLock", "SELECT pg_advisory_xact_lock($1::bigint)")

    enum LedgerFormat { case none, shared, lines }

    /// Whether the ledger exists, and whether it is keyed by owner.
    func ledgerFormat(_ connection: PQConnection) async throws -> LedgerFormat {
        let result = try await connection.query(
            PQQuery(
                "migrationLedgerFormat",
                """
                SELECT to_regclass($1) IS NOT NULL AS present,
                       EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                               WHERE attrelid = to_regclass($1) AND attname = 'owner' AND NOT attisdropped) AS lines
                """),
            ["\(schema).schema_migrations"])
        guard let row = result.first, try row.decode("present", as: Bool.self) else { return .none }
        return try row.decode("lines", as: Bool.self) ? .lines : .shared
    }

    /// The migrations already recorded, with their checksums (the ledger keyed by owner).
    func applied(_ connection: PQConnection) async throws -> [Key: String] {
        let rows = try await connection.query(
            PQQuery("migrationsApplied", "SELECT owner, version, checksum FROM \(schema).schema_migrations"))
        var applied: [Key: String] = [:]
        for row in rows.rows {
            let key = Key(owner: try row.decode("owner"), version: try row.decode("version"))
            applied[key] = try row.decode("checksum")
        }
        return applied
    }

    /// The names of the applied migrations, by owner, in version order (for `migrate`'s report
    /// and tests).
    public func appliedNames(_ connection: PQConnection) async throws -> [String] {
        guard try await ledgerFormat(connection) == .lines else { return [] }
        let rows = try await connection.query(
            PQQuery(
                "migrationNames", "SELECT owner || '/' || name AS id FROM \(schema).schema_migrations ORDER BY 1"))
        return try rows.rows.map { try $0.decode("id") }
    }

    private func apply(_ connection: PQConnection, logger: Logger) async throws -> [Migration] {
        try await connection.transaction { connection in
            try await connection.query(Self.lock, [Self.lockKey])
            switch try await ledgerFormat(connection) {
            case .lines: break
            case .shared:
                try await formerLedger.move(schema: schema, migrations: migrations, on: connection, logger: logger)
            case .none:
                try await connection.execute(
                    script: """
                        CREATE SCHEMA IF NOT EXISTS \(schema);
                        CREATE TABLE \(schema).schema_migrations (
                            owner text NOT NULL,
                            version integer NOT NULL,
                            name text NOT NULL,
                            checksum text NOT NULL,
                            applied_at timestamptz NOT NULL DEFAULT now(),
                            PRIMARY KEY (owner, version)
                        );
                        """, name: "migrationBootstrap")
            }
        }
        var newlyApplied: [Migration] = []
        for migration in migrations {
            let ran = try await connection.transaction { connection -> Bool in
                try await connection.query(Self.lock, [Self.lockKey])
                let key = Key(owner: migration.owner, version: migration.version)
                if let checksum = try await applied(connection)[key] {
                    if checksum != migration.checksum {
                        logger.warning(
                            "an applied migration has changed since it was applied; it is not run again",
                            metadata: ["migration": "\(migration.id)"])
                    }
                    return false
                }
                try await connection.execute(script: migration.sql, name: "migration \(migration.id)")
                try await connection.query(
                    PQQuery(
                        "migrationRecord",
                        "INSERT INTO \(schema).schema_migrations (owner, version, name, checksum)"
                            + " VALUES ($1, $2, $3, $4)"),
                    [migration.owner, migration.version, migration.name, migration.checksum])
                return true
            }
            guard ran else { continue }
            logger.info("applied migration", metadata: ["migration": "\(migration.id)"])
            newlyApplied.append(migration)
        }
        return newlyApplied
    }
}
