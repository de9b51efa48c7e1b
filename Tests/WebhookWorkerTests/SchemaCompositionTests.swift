import Foundation
import JobQueue
import LibPQ
import Logging
import Synchronization
@testable import TestSupport
import Testing
import WebhookDelivery
@testable import WebhookWorkerSchema

/// The deployed schema is two lines of migrations, each numbered by its owner: JobQueue's
/// (rendered for `webhook_worker`), then the deliveries'. A database migrated while the two
/// shared one version sequence has its ledger moved over once, and nothing applied again.
@Suite("The worker's composed schema", .timeLimit(.minutes(4)))
struct SchemaCompositionTests {
    /// The shared sequence as the last release before lines recorded it: each version's file
    /// name, and for 001, 005 and 007, whose text joined both owners' parts, the checksum
    /// databases recorded (the others recorded their one part's, the same text as now).
    static let shared: [Int: (name: String, checksum: String?)] = [
        1: ("001_jobs", "e9a98bf854fa01c3"), 2: ("002_deliveries", nil), 3: ("003_releases", nil),
        4: ("004_concurrency_keys", nil), 5: ("005_endpoints", "5a24e3ae378dd8fa"), 6: ("006_retired_secrets", nil),
        7: ("007_cheaper_keyed_claim", "7d5af4324e9a947c"), 8: ("008_trace_context", nil),
        9: ("009_console_audit", nil), 10: ("010_definer_triggers", nil), 11: ("011_console_sign_outs", nil),
        12: ("012_definer_triggers_and_catch_up", nil), 13: ("013_claim_reaches_unseen_keys", nil),
        14: ("014_one_live_job_per_delivery", nil),
    ]

    @Test("each owner numbers its own line upwards from 1; JobQueue's comes first, rendered for webhook_worker")
    func linesAreNumberedByOwner() {
        let queue = WebhookWorkerSchema.queue
        #expect(
            (queue.name, queue.channel, queue.metricPrefix)
                == ("webhook_worker", "webhook_worker_jobs", "webhook_worker"))
        let owners = WebhookWorkerSchema.migrations.map(\.owner)
        #expect(owners == queue.migrations.map(\.owner) + WebhookDeliverySchema.migrations.map(\.owner))
        #expect(Set(owners) == ["job_queue", "webhook_delivery"])
        for owner in Set(owners) {
            let line = WebhookWorkerSchema.migrations.filter { $0.owner == owner }
            // Numbered from 1 and rising; gaps are allowed (numbers are handed out ahead to work
            // that lands in any order).
            let versions = line.map(\.version)
            #expect(versions.first == 1, "\(owner) does not start at 1")
            #expect(zip(versions, versions.dropFirst()).allSatisfy { $0 < $1 }, "\(owner) is not numbered upwards")
            #expect(line.allSatisfy { $0.name.hasPrefix(String(format: "%03d_", $0.version)) })
        }
        #expect(queue.migrations.allSatisfy { !$0.sql.contains("{{") })
    }

    /// The migrations a release before lines had (each owner's first ones, as many as its former
    /// versions), and those written since.
    static func split(_ migrations: [Migration], _ ledger: LedgerMove) -> (former: [Migration], newer: [Migration]) {
        var former: [Migration] = []
        var newer: [Migration] = []
        for migration in migrations {
            let count = ledger.formerVersions[migration.owner]?.count ?? 0
            if migration.version <= count { former.append(migration) } else { newer.append(migration) }
        }
        return (former, newer)
    }

    /// Leaves `schema` as a release before lines left it: only the migrations it had, applied.
    static func migrateFormerOnly(
        _ database: TestDatabase, schema: String, migrations: [Migration], ledger: LedgerMove
    ) async throws {
        try await database.script("DROP SCHEMA \(schema) CASCADE")
        let former = Migrator(schema: schema, migrations: split(migrations, ledger).former, formerLedger: ledger)
        try await database.withConnection { _ = try await former.migrate($0, logger: TestDatabase.logger) }
    }

    /// Rewrites the ledger of `database` as a release before lines left it: one row per shared
    /// version, keyed by `version`, each applied on `2024-01-0N`.
    static func recordSharedLedger(
        _ database: TestDatabase, schema: String, versions: [Int], checksums: [Int: String]
    ) async throws {
        try await database.script(
            """
            DROP TABLE \(schema).schema_migrations;
            CREATE TABLE \(schema).schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                checksum text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            );
            """)
        for version in versions {
            try await database.query(
                "INSERT INTO \(schema).schema_migrations (version, name, checksum, applied_at)"
                    + " VALUES ($1::integer, $2, $3, '2024-01-01'::timestamptz + $1::integer * interval '1 day')",
                [version, shared[version]!.name, checksums[version]!])
        }
    }

    /// The checksum each shared version recorded: the joined versions' from the old files, the
    /// others' their one migration's.
    static func sharedChecksums(_ formerVersions: [Int: Migration]) -> [Int: String] {
        var checksums: [Int: String] = [:]
        for (version, old) in shared {
            checksums[version] = old.checksum ?? formerVersions[version]?.checksum
        }
        return checksums
    }

    /// The worker's migrations by the shared version each had.
    static var workerFormerVersions: [Int: Migration] {
        var byVersion: [Int: Migration] = [:]
        for (owner, versions) in WebhookWorkerSchema.migrator.formerLedger.formerVersions {
            for (version, migration) in zip(versions, WebhookWorkerSchema.migrations.filter { $0.owner == owner }) {
                if byVersion[version] == nil || owner == WebhookDeliverySchema.migrationOwner {
                    byVersion[version] = migration
                }
            }
        }
        return byVersion
    }

    @Test("a database migrated before lines has its ledger moved once; nothing is applied again")
    func sharedLedgerIsMovedOnce() async throws {
        try await withTestDatabase { database in
            let formerLedger = WebhookWorkerSchema.migrator.formerLedger
            try await Self.migrateFormerOnly(
                database, schema: "webhook_worker", migrations: WebhookWorkerSchema.migrations, ledger: formerLedger)
            try await Self.recordSharedLedger(
                database, schema: "webhook_worker", versions: Array(1...14),
                checksums: Self.sharedChecksums(Self.workerFormerVersions))
            let recorder = WarningRecorder()
            let logger = Logger(label: "test") { _ in recorder }
            // Six replicas at once: one moves the ledger under the lock, the others find it moved.
            let applied = try await withThrowingTaskGroup(of: [Migration].self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        try await database.withConnection {
                            try await WebhookWorkerSchema.migrator.migrate($0, logger: logger)
                        }
                    }
                }
                return try await group.reduce(into: [Migration]()) { $0 += $1 }
            }
            // Only the migrations written since lines run, once.
            let newer = Self.split(WebhookWorkerSchema.migrations, formerLedger).newer.map(\.id)
            #expect(applied.map(\.id).sorted() == newer.sorted(), "applied again: \(applied.map(\.id))")
            #expect(recorder.warnings.isEmpty, "\(recorder.warnings)")
            let rows = try await database.query(
                "SELECT owner, version, name, checksum, applied_at::date::text AS day"
                    + " FROM webhook_worker.schema_migrations ORDER BY owner, version")
            let ledger = try rows.rows.map {
                "\(try $0.decode("owner", as: String.self))/\(try $0.decode("name", as: String.self))"
                    + " \(try $0.decode("version", as: Int.self)) \(try $0.decode("checksum", as: String.self))"
            }
            let expected = WebhookWorkerSchema.migrations.sorted { ($0.owner, $0.version) < ($1.owner, $1.version) }
                .map { "\($0.id) \($0.version) \($0.checksum)" }
            #expect(ledger == expected)
            // Each row keeps the day its shared version was applied: the deliveries' 003 was 005.
            #expect(
                try await database.scalar(
                    "SELECT applied_at::date::text FROM webhook_worker.schema_migrations"
                        + " WHERE owner = 'webhook_delivery' AND version = 3", as: String.self) == "2024-01-06")
            // Moved once: a later migration is all that a new release applies.
            let later = Migrator(
                schema: WebhookWorkerSchema.name,
                migrations: WebhookWorkerSchema.migrations + [
                    Migration(
                        owner: WebhookDeliverySchema.migrationOwner, version: 100, name: "100_later", sql: "SELECT 1")
                ], formerLedger: WebhookWorkerSchema.migrator.formerLedger)
            let appliedLater = try await database.withConnection { try await later.migrate($0, logger: logger) }
            #expect(appliedLater.map(\.id) == ["webhook_delivery/100_later"])
            #expect(recorder.warnings.isEmpty, "\(recorder.warnings)")
        }
    }

    @Test("a queue of JobQueue's own migrated before lines has its ledger moved; nothing is applied again")
    func queueLedgerIsMoved() async throws {
        try await withQueueDatabase { database in
            let queue = database.queue
            try await Self.migrateFormerOnly(
                database, schema: queue.name, migrations: queue.migrations, ledger: JobQueueSchema.formerLedger)
            var byVersion: [Int: Migration] = [:]
            let formerVersions = JobQueueSchema.formerLedger.formerVersions[JobQueueSchema.migrationOwner]!
            for (version, migration) in zip(formerVersions, queue.migrations) {
                byVersion[version] = migration
            }
            // A queue alone recorded its own files: their names, and their texts' checksums.
            try await Self.recordSharedLedger(
                database, schema: queue.name, versions: byVersion.keys.sorted(),
                checksums: byVersion.mapValues(\.checksum))
            let recorder = WarningRecorder()
            let logger = Logger(label: "test") { _ in recorder }
            let (first, second, names) = try await database.withConnection { connection in
                (
                    try await queue.migrator.migrate(connection, logger: logger),
                    try await queue.migrator.migrate(connection, logger: logger),
                    try await queue.migrator.appliedNames(connection)
                )
            }
            let newer = Self.split(queue.migrations, JobQueueSchema.formerLedger).newer.map(\.id)
            #expect(first.map(\.id) == newer && second.isEmpty, "applied again: \(first.map(\.id))")
            #expect(names == queue.migrations.map(\.id), "the ledger does not list the queue's migrations")
            #expect(recorder.warnings.isEmpty, "\(recorder.warnings)")
        }
    }

    @Test("a ledger with a version no owner had is refused, and left as it was")
    func unknownSharedVersionIsRefused() async throws {
        try await withQueueDatabase { database in
            let queue = database.queue
            try await Self.recordSharedLedger(database, schema: queue.name, versions: [1], checksums: [1: "x"])
            try await database.query(
                "INSERT INTO \(queue.name).schema_migrations (version, name, checksum) VALUES (99, '099_future', 'x')")
            await #expect(throws: LedgerMove.Unmapped.self) {
                try await database.withConnection { try await queue.migrator.migrate($0, logger: TestDatabase.logger) }
            }
            #expect(try await database.count("SELECT count(*) FROM \(queue.name).schema_migrations") == 2)
        }
    }

    @Test("a migration whose recorded checksum differs is reported, not run again")
    func changedMigrationIsReported() async throws {
        try await withTestDatabase { database in
            try await database.query(
                "UPDATE webhook_worker.schema_migrations SET checksum = 'edited'"
                    + " WHERE owner = 'webhook_delivery' AND version = 3")
            let recorder = WarningRecorder()
            let logger = Logger(label: "test") { _ in recorder }
            // Up to date: reported without the lock.
            let applied = try await database.withConnection {
                try await WebhookWorkerSchema.migrator.migrate($0, logger: logger)
            }
            #expect(applied.isEmpty)
            #expect(recorder.warnings.count == 1)
            #expect(recorder.warnings.first?.contains("webhook_delivery/003_endpoints") == true)
            // With one pending: reported under the lock, and only the pending one runs.
            let later = Migrator(
                schema: WebhookWorkerSchema.name,
                migrations: WebhookWorkerSchema.migrations + [
                    Migration(owner: "job_queue", version: 100, name: "100_later", sql: "SELECT 1")
                ])
            let appliedLater = try await database.withConnection { try await later.migrate($0, logger: logger) }
            #expect(appliedLater.map(\.id) == ["job_queue/100_later"])
            #expect(recorder.warnings.count == 2)
        }
    }

    @Test("concurrent migrate from several connections is safe; twice changes nothing")
    func concurrentMigrations() async throws {
        let admin = try await PQConnection.connect(TestDatabase.serverURL, logger: TestDatabase.logger)
        let name = "t_migrate_\(UInt32.random(in: 0 ... .max))"
        try await admin.execute(script: "CREATE DATABASE \(name)", name: "create")
        let conninfo = TestDatabase.withDatabase(TestDatabase.serverURL, name)
        let applied = try await withThrowingTaskGroup(of: [Migration].self) { group in
            for _ in 0..<6 {
                group.addTask {
                    let connection = try await PQConnection.connect(conninfo, logger: TestDatabase.logger)
                    let applied = try await WebhookWorkerSchema.migrator.migrate(
                        connection, logger: TestDatabase.logger)
                    await connection.close()
                    return applied
                }
            }
            return try await group.reduce(into: [Migration]()) { $0 += $1 }
        }
        #expect(Set(applied) == Set(WebhookWorkerSchema.migrations))
        #expect(applied.count == WebhookWorkerSchema.migrations.count)
        let connection = try await PQConnection.connect(conninfo, logger: TestDatabase.logger)
        #expect(try await WebhookWorkerSchema.migrator.migrate(connection, logger: TestDatabase.logger).isEmpty)
        let count = try await connection.query(
            PQQuery("", "SELECT count(*) AS n FROM webhook_worker.schema_migrations"))
        #expect(try count.first?.decode("n", as: Int.self) == WebhookWorkerSchema.migrations.count)
        await connection.close()
        try await admin.execute(script: "DROP DATABASE \(name) WITH (FORCE)", name: "drop")
        await admin.close()
    }
}

/// Keeps the warnings logged through it, with their metadata, for tests about what is reported.
final class WarningRecorder: LogHandler, Sendable {
    private let recorded = Mutex<[String]>([])
    var warnings: [String] { recorded.withLock { $0 } }

    var logLevel: Logger.Level {
        get { .warning }
        set {}
    }
    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    func log(event: LogEvent) {
        guard event.level >= .warning else { return }
        recorded.withLock { $0.append("\(event.message) \(event.metadata ?? [:])") }
    }
}
