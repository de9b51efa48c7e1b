import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookWorkerSchema

/// The worker behind PgBouncer 1.18 in transaction pooling mode (Debian's), configured as
/// docs/operations.md says: `--prepared-statements off`, `--listen-database-url` direct.
@Suite("Behind PgBouncer (transaction pooling)", .timeLimit(.minutes(4)))
struct PgBouncerTests {
    /// Each test fails with why, when PgBouncer cannot be started.
    init() throws { try TestPgBouncer.require() }

    @Test("end to end: every event reaches exactly the eligible clients, once each")
    func deliveries() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database)
            try await fixture.addClient("alpha")
            try await fixture.addClient("beta")
            try await fixture.addClient("no-scope", scopes: "profile,email")
            let (worker, sender) = fixture.startWorker { $0.throughPgBouncer(database) }
            for _ in 0..<50 { try await fixture.connectIntegration() }
            let delivered = await eventually(timeout: .seconds(60)) {
                (try? await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'delivered'")) == 100
            }
            try await Task.sleep(for: .milliseconds(300))
            try await stopAll(worker, sender, fixture)
            #expect(delivered)
            #expect(fixture.receiver.received.count == 100)
            #expect(Set(fixture.receiver.received.map(\.uri)) == ["/alpha", "/beta"])
            let ids = fixture.receiver.received.compactMap { $0.header("X-Webhook-Delivery") }
            #expect(Set(ids).count == 100, "one request per delivery")
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 0)
        }
    }

    @Test("several replicas claim thousands of jobs through the pooler; each job is handled exactly once")
    func replicas() async throws {
        try await withTestDatabase { database in
            try await expectReplicasHandleEachJobOnce(database) { $0.throughPgBouncer(database) }
        }
    }

    @Test("the worker's settings hold in its statements and transactions and never reach the pooler's other clients")
    func settingsStayPerTransaction() async throws {
        try await withTestDatabase { database in
            var configuration = JobWorkerConfiguration(
                conninfo: nil, schema: WebhookWorkerSchema.queue, statementTimeout: .milliseconds(300))
            configuration.throughPgBouncer(database)
            try await PQConnectionPool.withPool(
                configuration: configuration.databasePool(maxConnections: 1), logger: TestDatabase.logger
            ) { pool in
                let shown = try await pool.query(PQQuery("showTimeout", "SHOW statement_timeout"))
                #expect(try shown.first?.decode("statement_timeout", as: String.self) == "300ms")
                let inTransaction = try await pool.transaction { connection in
                    try await connection.query(PQQuery("showLockTimeout", "SHOW lock_timeout")).first?
                        .decode("lock_timeout", as: String.self)
                }
                #expect(inTransaction == "2s")
                await #expect(throws: PQError.self) {
                    try await pool.query(PQQuery("sleep", "SELECT pg_sleep(2)"))
                }
                // Named twice on purpose: no "prepared statement does not exist" on another backend.
                for _ in 0..<20 { try await pool.query(PQQuery("one", "SELECT 1 AS one")) }
            }
            // A plain client of the pooler: PgBouncer lends it the server connection the worker
            // used last (the only one of this fresh database). None of the worker's settings.
            let other = try await PQConnection.connect(
                TestPgBouncer.conninfo(database), logger: TestDatabase.logger)
            defer { Task { await other.close() } }
            let row = try await other.query(
                PQQuery(
                    "",
                    "SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt, "
                        + "current_setting('IntervalStyle') AS style, current_setting('TimeZone') AS tz, "
                        + "pg_backend_pid() AS pid"
                )
            ).first
            #expect(try row?.decode("st", as: String.self) == "0")
            #expect(try row?.decode("lt", as: String.self) == "0")
            #expect(try row?.decode("style", as: String.self) == "postgres")
            #expect(try row?.decode("tz", as: String.self) == "UTC")
        }
    }

    @Test("replicas migrating a new database through the pooler at once apply each migration once")
    func migrationsThroughThePooler() async throws {
        let name = "t_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""))"
        try await TestDatabase(name: "postgres", conninfo: TestDatabase.serverURL, admin: TestDatabase.serverURL)
            .script("CREATE DATABASE \(name)")
        let database = TestDatabase(
            name: name, conninfo: TestDatabase.withDatabase(TestDatabase.serverURL, name), admin: TestDatabase.serverURL
        )
        try await withTeardown {
            try await withThrowingTaskGroup(of: [Migration].self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        let connection = try await PQConnection.connect(
                            TestPgBouncer.conninfo(database), preparedStatements: false, logger: TestDatabase.logger)
                        defer { Task { await connection.close() } }
                        return try await WebhookWorkerSchema.migrator.migrate(connection, logger: TestDatabase.logger)
                    }
                }
                var applied: [Migration] = []
                for try await migrations in group { applied += migrations }
                #expect(Set(applied) == Set(WebhookWorkerSchema.migrator.migrations))
                #expect(applied.count == WebhookWorkerSchema.migrator.migrations.count)
            }
            #expect(
                try await database.count("SELECT count(*) FROM webhook_worker.schema_migrations")
                    == WebhookWorkerSchema.migrator.migrations.count)
        } teardown: {
            await database.drop()
        }
    }
}
