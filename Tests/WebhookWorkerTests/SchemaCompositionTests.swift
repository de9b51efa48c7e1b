import Foundation
import JobQueue
import LibPQ
import Logging
import Synchronization
@testable import TestSupport
import Testing
import WebhookDelivery
@testable import WebhookWorkerSchema

/// The deployed schema is JobQueue's migrations (rendered for `webhook_worker`) and the
/// delivery's, composed; a database migrated before the queue's SQL moved to a folder of its own
/// must find it unchanged.
@Suite("The worker's composed schema", .timeLimit(.minutes(2)))
struct SchemaCompositionTests {
    /// The files of sql/ before the split, by version: their names and the checksums
    /// (``Migration/checksum``) every database migrated by an earlier release recorded. Computed
    /// once from those files; they never change.
    static let historical: [Int: (name: String, checksum: String)] = [
        1: ("001_jobs", "e9a98bf854fa01c3"),
        2: ("002_deliveries", "f40f102c38615273"),
        3: ("003_releases", "715da9e92720101f"),
        4: ("004_concurrency_keys", "eb70db54b61acf91"),
        5: ("005_endpoints", "5a24e3ae378dd8fa"),
        6: ("006_retired_secrets", "3b2f39de2f1bd028"),
        7: ("007_cheaper_keyed_claim", "7d5af4324e9a947c"),
    ]

    @Test("each composed migration has the old file's version and name, and its checksum is accepted")
    func checksumsMatchTheOldFiles() {
        let composed = WebhookWorkerSchema.migrations.filter { Self.historical[$0.version] != nil }
        #expect(composed.map(\.version) == Self.historical.keys.sorted())
        for migration in composed {
            let old = Self.historical[migration.version]!
            #expect(migration.name == old.name)
            #expect(migration.matches(checksum: old.checksum), "\(migration.name) would warn on old databases")
        }
        // Only 001 (its comments no longer name the program) and 005 (statements grouped by owner)
        // differ in text; the rest are the old files byte for byte.
        let differing = composed.filter { $0.checksum != Self.historical[$0.version]!.checksum }.map(\.version)
        #expect(differing == [1, 5])
    }

    @Test("the queue's part of the composed schema is JobQueue's own migrations, rendered for webhook_worker")
    func queuePartIsJobQueues() {
        let queue = WebhookWorkerSchema.queue
        #expect(
            (queue.name, queue.channel, queue.metricPrefix) == (
                "webhook_worker", "webhook_worker_jobs", "webhook_worker"
            ))
        for part in queue.migrations {
            let composed = WebhookWorkerSchema.migrations.first { $0.version == part.version }
            #expect(composed?.sql.hasPrefix(part.sql) == true, "\(part.name) is not the start of its version")
            #expect(!part.sql.contains("{{"), "\(part.name) has a placeholder left")
        }
        for part in WebhookDeliverySchema.migrations {
            let composed = WebhookWorkerSchema.migrations.first { $0.version == part.version }
            #expect(composed?.sql.hasSuffix(part.sql) == true, "\(part.name) is not the end of its version")
        }
    }

    @Test("a database migrated by an earlier release has nothing to apply and no changed migration")
    func earlierReleaseDatabaseIsUpToDate() async throws {
        try await withTestDatabase { database in
            // What the previous release recorded: the old files' names and checksums.
            for (version, old) in Self.historical {
                try await database.query(
                    "UPDATE webhook_worker.schema_migrations SET name = $2, checksum = $3 WHERE version = $1",
                    [version, old.name, old.checksum])
            }
            let recorder = WarningRecorder()
            let logger = Logger(label: "test") { _ in recorder }
            try await database.withConnection { connection in
                let applied = try await WebhookWorkerSchema.migrator.migrate(connection, logger: logger)
                #expect(applied.isEmpty)
                // A later version makes the migrator go through every recorded one under its lock,
                // where a changed migration is reported: none is.
                let next = (WebhookWorkerSchema.migrations.map(\.version).max() ?? 0) + 1
                let later = Migrator(
                    schema: WebhookWorkerSchema.name,
                    migrations: WebhookWorkerSchema.migrations + [
                        Migration(version: next, name: "later", sql: "SELECT 1")
                    ])
                let appliedLater = try await later.migrate(connection, logger: logger)
                #expect(appliedLater == [next])
            }
            #expect(recorder.warnings.isEmpty, "\(recorder.warnings)")
        }
    }

    @Test("a migration whose recorded checksum is unknown is reported, not run again")
    func changedMigrationIsReported() async throws {
        try await withTestDatabase { database in
            try await database.query(
                "UPDATE webhook_worker.schema_migrations SET checksum = 'edited' WHERE version = 5")
            let recorder = WarningRecorder()
            let logger = Logger(label: "test") { _ in recorder }
            let next = (WebhookWorkerSchema.migrations.map(\.version).max() ?? 0) + 1
            let later = Migrator(
                schema: WebhookWorkerSchema.name,
                migrations: WebhookWorkerSchema.migrations + [Migration(version: next, name: "later", sql: "SELECT 1")])
            let applied = try await database.withConnection { try await later.migrate($0, logger: logger) }
            #expect(applied == [next])
            #expect(recorder.warnings.count == 1)
            #expect(recorder.warnings.first?.contains("005_endpoints") == true)
        }
    }

    @Test("a changed migration is reported when nothing is pending too")
    func changedMigrationIsReportedWhenUpToDate() async throws {
        try await withTestDatabase { database in
            try await database.query(
                "UPDATE webhook_worker.schema_migrations SET checksum = 'edited' WHERE version = 5")
            let recorder = WarningRecorder()
            let logger = Logger(label: "test") { _ in recorder }
            let applied = try await database.withConnection {
                try await WebhookWorkerSchema.migrator.migrate($0, logger: logger)
            }
            #expect(applied.isEmpty)
            #expect(recorder.warnings.count == 1)
            #expect(recorder.warnings.first?.contains("005_endpoints") == true)
        }
    }

    @Test("concurrent migrate from several connections is safe; twice changes nothing")
    func concurrentMigrations() async throws {
        let admin = try await PostgresConnection.connect(TestDatabase.serverURL, logger: TestDatabase.logger)
        let name = "t_migrate_\(UInt32.random(in: 0 ... .max))"
        try await admin.execute(script: "CREATE DATABASE \(name)", name: "create")
        let conninfo = TestDatabase.withDatabase(TestDatabase.serverURL, name)
        let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
            for _ in 0..<6 {
                group.addTask {
                    let connection = try await PostgresConnection.connect(conninfo, logger: TestDatabase.logger)
                    let applied = try await WebhookWorkerSchema.migrator.migrate(
                        connection, logger: TestDatabase.logger)
                    await connection.close()
                    return applied
                }
            }
            return try await group.reduce(into: [[Int]]()) { $0.append($1) }
        }
        #expect(applied.flatMap { $0 }.sorted() == WebhookWorkerSchema.migrations.map(\.version))
        let connection = try await PostgresConnection.connect(conninfo, logger: TestDatabase.logger)
        #expect(try await WebhookWorkerSchema.migrator.migrate(connection, logger: TestDatabase.logger).isEmpty)
        let count = try await connection.query(
            PostgresQuery("", "SELECT count(*) AS n FROM webhook_worker.schema_migrations"))
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
