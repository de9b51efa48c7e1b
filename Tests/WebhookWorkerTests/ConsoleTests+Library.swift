import Foundation
import JobQueue
import LibPQ
import Logging
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookWorkerSchema

@testable import webhook_worker

/// The library methods the console added, read against a real PostgreSQL.
extension ConsoleTests {
    @Test("Deliveries.search: client by either id, user, status, id, time range; last error class")
    func deliverySearch() async throws {
        try await Self.withConsole { _, database, id in
            try await database.query(
                """
                INSERT INTO webhook_worker.webhook_deliveries (delivery_id, event, source_job_id,
                    integration_account_id, user_id, oauth_client_id, payload, status, created_at)
                VALUES (gen_random_uuid(), 'integration.connected', 2, 'acct-2', 'user-2', 'client-2', '{}',
                        'delivered', now() - interval '3 hours')
                """)
            try await database.withConnection { connection in
                let deliveries = Deliveries(connection)
                let byPublic = try await deliveries.search(.init(client: "acme-public"))
                #expect(byPublic.map(\.delivery.deliveryID) == [id])
                #expect(byPublic.first?.clientPublicID == "acme-public" && byPublic.first?.lastErrorClass == "timeout")
                #expect(try await deliveries.search(.init(client: "client-1")).count == 1)
                #expect(try await deliveries.search(.init(client: "client-2")).first?.clientName == nil)
                #expect(try await deliveries.search(.init(user: "user-2")).map(\.delivery.userID) == ["user-2"])
                #expect(try await deliveries.search(.init(status: .failed)).map(\.delivery.deliveryID) == [id])
                #expect(try await deliveries.search(.init(deliveryID: id)).count == 1)
                let hourAgo = Date().addingTimeInterval(-3600)
                #expect(try await deliveries.search(.init(createdFrom: hourAgo)).map(\.delivery.deliveryID) == [id])
                #expect(try await deliveries.search(.init(createdUntil: hourAgo)).map(\.delivery.userID) == ["user-2"])
                #expect(try await deliveries.search(.init()).count == 2)
                #expect(try await deliveries.search(.init(), limit: 1).count == 1)
            }
        }
    }

    @Test("QueueStatistics.throughputPerMinute: one entry per minute, outcomes split")
    func throughputPerMinute() async throws {
        try await withTestDatabase { database in
            try await database.query(
                """
                INSERT INTO webhook_worker.job_attempts (job_id, kind, attempt, worker_id, started_at, finished_at,
                    outcome)
                SELECT n, CASE WHEN n <= 4 THEN 'a' ELSE 'b' END, 1, 'w', now(), now() - make_interval(mins => n % 3),
                       CASE WHEN n % 2 = 0 THEN 'succeeded' ELSE 'failed' END
                FROM generate_series(1, 9) n
                UNION ALL SELECT 99, 'a', 1, 'w', now(), now() - interval '2 hours', 'succeeded'
                """)
            try await database.withConnection { connection in
                let minutes = try await QueueStatistics.throughputPerMinute(
                    connection, schema: WebhookWorkerSchema.queue, minutes: 60)
                #expect(minutes.count == 60)
                #expect(zip(minutes, minutes.dropFirst()).allSatisfy { $0.start.addingTimeInterval(60) == $1.start })
                #expect(minutes.reduce(0) { $0 + $1.succeeded } == 4 && minutes.reduce(0) { $0 + $1.failed } == 5)
                let kindA = try await QueueStatistics.throughputPerMinute(
                    connection, schema: WebhookWorkerSchema.queue, minutes: 60, kind: "a")
                #expect(kindA.reduce(0) { $0 + $1.succeeded + $1.failed } == 4)
                #expect(
                    try await QueueStatistics.throughputPerMinute(
                        connection, schema: WebhookWorkerSchema.queue, minutes: 1
                    ).count == 1)
            }
        }
    }

    @Test("DeadLetters by reason; Endpoints.overview; AuditLog")
    func deadLettersEndpointsAudit() async throws {
        try await Self.withConsole { _, database, _ in
            try await database.query(
                """
                INSERT INTO webhook_worker.dead_letter_jobs (job_id, kind, payload, priority, attempts, max_attempts,
                    reason, created_at, dead_at)
                SELECT n, 'k', '{}', 0, 1, 1, CASE WHEN n <= 2 THEN 'permanent_failure' ELSE 'attempts_exhausted' END,
                       now(), now()
                FROM generate_series(1, 5) n
                """)
            try await database.withConnection { connection in
                let deadLetters = DeadLetters(connection, schema: WebhookWorkerSchema.queue)
                #expect(try await deadLetters.list(.init(), reason: "permanent_failure").count == 2)
                #expect(try await deadLetters.list(.init(), reason: nil).count == 5)
                #expect(try await deadLetters.reasons() == ["attempts_exhausted", "permanent_failure"])
                let ids = try await deadLetters.requeueableIDs(.init(kind: "k"), reason: "attempts_exhausted")
                #expect(ids.count == 3)
                let summary = try await deadLetters.requeueAll(.init(ids: ids))
                #expect(summary.requeued == 3)
                #expect(try await deadLetters.requeueableIDs(.init(), reason: "attempts_exhausted").isEmpty)

                let endpoints = try await Endpoints(connection).overview()
                let acme = try #require(endpoints.first)
                #expect(endpoints.count == 1 && acme.clientPublicID == "acme-public" && acme.state == "closed")
                #expect(acme.redactedURL == "https://***@example.com/hook?***")
                #expect(acme.attempts == 1 && acme.succeeded == 0 && acme.successRate == 0)
                #expect(acme.meanLatencyMilliseconds == 15000)
                try await Endpoints(connection).setEnabled(key: acme.key, false, by: "test")
                #expect(try await Endpoints(connection).overview().first?.isDisabled == true)

                let audit = AuditLog(connection)
                let first = try await audit.record(
                    actor: "alice", action: "kind.pause", target: "kind:noop", detail: ["why": "\"quoted\""],
                    outcome: "ok")
                try await audit.record(actor: "bob", action: "x", target: "y", outcome: "failed: no")
                let entries = try await audit.recent()
                #expect(entries.map(\.actor) == ["bob", "alice"] && entries[1].id == first)
                #expect(entries[1].detail == #"{"why": "\"quoted\""}"#)
                #expect(try await audit.recent(actor: "alice").count == 1)
            }
        }
    }
}
