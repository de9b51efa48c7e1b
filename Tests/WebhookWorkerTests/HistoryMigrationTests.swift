import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookWorkerSchema

/// The online migration of an install with history (issue 23): its plain history tables become
/// partitioned while a worker delivers, the old rows stay where they are (attached as the first
/// partition, not copied), and nothing is lost or sent twice.
@Suite("History partitioning of a populated database", .timeLimit(.minutes(4)))
struct HistoryMigrationTests {
    /// The schema of the release before partitioning, plus what this release's worker reads that
    /// the previous release's did not: the function lookups by id need (webhook_delivery 015) and
    /// the endpoints' operator limits its re-check reads (webhook_delivery 034, which touches
    /// nothing the partitioning migrations change; the migrator applies the ones missing after it).
    static let earlier = WebhookWorkerSchema.migrations.filter {
        $0.owner == "job_queue" ? $0.version < 15 : ($0.version <= 15 || $0.version == 34)
    }

    @Test("a populated install is partitioned with a worker delivering throughout")
    func migratesOnline() async throws {
        try await withTestDatabase(appTables: true, migrations: Self.earlier) { database in
            // History: 30,000 deliveries over 40 days, an attempt each, and their jobs' attempts.
            try await database.script(
                """
                INSERT INTO webhook_worker.webhook_deliveries (delivery_id, event, source_job_id,
                    integration_account_id, user_id, oauth_client_id, payload, status, attempts, created_at)
                SELECT gen_random_uuid(), 'integration.connected', -g, 'acct-old', 'user-old', 'old-' || (g % 7),
                       '{}', 'delivered', 1, now() - (g % 40) * interval '1 day' - interval '1 minute'
                FROM generate_series(1, 30000) g;
                INSERT INTO webhook_worker.delivery_attempts (delivery_id, attempt, url, http_status, duration_ms,
                    attempted_at)
                SELECT delivery_id, 1, 'https://old.example/hook', 200, 5, created_at
                FROM webhook_worker.webhook_deliveries;
                INSERT INTO webhook_worker.job_attempts (job_id, kind, attempt, worker_id, started_at, finished_at,
                    outcome)
                SELECT -g, 'webhook.deliver', 1, 'old', now(), now() - (g % 40) * interval '1 day', 'succeeded'
                FROM generate_series(1, 30000) g;
                """)
            let filenodes = try await Self.filenodes(database)
            let oldID = try #require(
                try await database.scalar(
                    "SELECT delivery_id FROM webhook_worker.webhook_deliveries LIMIT 1", as: UUID.self))

            let fixture = try await DeliveryFixture.make(database: database)
            try await fixture.addClient("client-a")
            try await fixture.addClient("client-b")
            let (worker, sender) = fixture.startWorker(configure: { $0.history = nil })
            // Events keep arriving before, during and after the migration, a few ahead of the
            // deliveries at most.
            let events = Task {
                var count = 0
                while !Task.isCancelled {
                    try await fixture.connectIntegration()
                    count += 1
                    let target = 2 * max(0, count - 5)
                    _ = await eventually { fixture.receiver.received.count >= target }
                }
            }
            #expect(await eventually { fixture.receiver.received.count >= 10 })
            try await database.withConnection { connection in
                let applied = try await WebhookWorkerSchema.migrator.migrate(connection, logger: TestDatabase.logger)
                #expect(applied.count == WebhookWorkerSchema.migrations.count - Self.earlier.count)
            }
            let migratedAt = fixture.receiver.received.count
            #expect(await eventually { fixture.receiver.received.count >= migratedAt + 10 })
            events.cancel()
            _ = await events.result
            // Every event fanned out to both clients, and every delivery was made.
            #expect(
                await eventually(timeout: .seconds(90)) {
                    (try? await database.count("SELECT count(*) FROM webhook_worker.jobs")) == 0
                })
            let eventCount = try await database.count(
                """
                SELECT count(*) FROM webhook_worker.job_attempts
                WHERE kind = 'integration.connected' AND outcome = 'succeeded'
                """)
            let expected = eventCount * 2
            #expect(eventCount >= 10)
            #expect(
                try await database.count(
                    """
                    SELECT count(*) FROM webhook_worker.webhook_deliveries
                    WHERE status = 'delivered' AND oauth_client_id LIKE 'client-%'
                    """) == expected)
            try await stopAll(worker, sender, fixture)

            // Each delivery reached its receiver once, none failed, every attempt is recorded.
            let ids = fixture.receiver.received.compactMap { $0.header("X-Webhook-Delivery") }
            #expect(ids.count == expected)
            #expect(Set(ids).count == expected)
            #expect(
                try await database.count(
                    """
                    SELECT count(*) FROM webhook_worker.delivery_attempts a
                    JOIN webhook_worker.webhook_deliveries d USING (delivery_id)
                    WHERE d.oauth_client_id LIKE 'client-%' AND a.http_status = 200
                    """) == expected)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.job_attempts WHERE outcome IN ('failed', 'lost')") == 0)

            // Partitioned, the old tables attached as they were: same files, all their rows.
            for table in ["webhook_deliveries", "delivery_attempts", "job_attempts"] {
                #expect(
                    try await database.scalar(
                        "SELECT relkind::text FROM pg_class WHERE oid = ('webhook_worker.' || $1)::regclass", [table],
                        as: String.self) == "p")
            }
            #expect(try await Self.filenodes(database) == filenodes)
            #expect(
                try await database.count("SELECT count(*) FROM webhook_worker.webhook_deliveries_legacy") >= 30_000)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.job_attempts_legacy") >= 30_000)
            // The DBA views and lookups by old (random) and new (time-carrying) ids work.
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.deliveries_by_client") >= 9)
            let lastID = try #require(ids.last)
            let newID = try #require(UUID(uuidString: lastID))
            #expect(DeliveryID.time(of: newID) != nil)
            let (old, new, attempts) = try await database.withConnection { connection in
                let deliveries = Deliveries(connection)
                return (
                    try await deliveries.get(oldID)?.status, try await deliveries.get(newID)?.status,
                    try await deliveries.attempts(of: newID).count
                )
            }
            #expect(old == "delivered" && new == "delivered" && attempts == 1)
        }
    }

    /// The files of the three history tables (their legacy partitions after the migration).
    static func filenodes(_ database: TestDatabase) async throws -> [Int64] {
        var nodes: [Int64] = []
        for table in ["webhook_deliveries", "delivery_attempts", "job_attempts"] {
            let node = try await database.scalar(
                """
                SELECT pg_relation_filenode(coalesce(to_regclass('webhook_worker.' || $1 || '_legacy'),
                                                     ('webhook_worker.' || $1)::regclass))::bigint
                """, [table], as: Int64.self)
            nodes.append(try #require(node))
        }
        return nodes
    }
}
