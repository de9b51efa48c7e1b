import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookWorkerSchema

/// The deliveries' operations as a program (the CLI, a console) calls them.
@Suite("Delivery operations", .timeLimit(.minutes(4)))
struct DeliveryOperationsTests {
    @Test("resend queues one job for the delivery (its key and endpoint), then refuses while it is queued")
    func resend() async throws {
        try await withTestDatabase { database in
            let id = UUID()
            try await database.query(
                """
                INSERT INTO webhook_worker.webhook_deliveries
                    (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload, \
                status)
                VALUES ($1, 'integration.connected', 1, 'acct-1', 'user-1', 'client-a', '{}', 'failed')
                """, [id])
            try await database.withConnection { connection in
                let deliveries = Deliveries(connection)
                let job = try await deliveries.resend(id)
                let row = try #require(
                    try await database.query("SELECT * FROM webhook_worker.jobs WHERE id = $1", [job]).first)
                #expect(try row.decode("kind", as: String.self) == "webhook.deliver")
                #expect(
                    try row.decode("payload", as: String.self) == #"{"delivery_id": "\#(id.uuidString.lowercased())"}"#)
                #expect(
                    try row.decode("unique_key", as: String.self) == "webhook.deliver:\(id.uuidString.lowercased())")
                #expect(try row.decode("concurrency_key", as: String.self) == "client:client-a")
                #expect(try await deliveries.get(id)?.status == "pending")
                await #expect(throws: Deliveries.ResendError.alreadyQueued(id)) { try await deliveries.resend(id) }
                let unknown = UUID()
                await #expect(throws: Deliveries.ResendError.notFound(unknown)) { try await deliveries.resend(unknown) }
            }
        }
    }

    @Test("one delivery never has two live jobs: fan-out, resend, dead-letter retry (one or all) share one key")
    func oneLiveJobPerDelivery() async throws {
        try await withTestDatabase(appTables: true) { database in
            // A receiver that answers 410 Gone: the first attempt dead-letters the delivery.
            let fixture = try await DeliveryFixture.make(database: database) { _ in .status(410) }
            try await fixture.addClient("c1")
            try await fixture.connectIntegration()
            let (worker, sender) = fixture.startWorker()
            #expect(
                await eventually {
                    (try? await database.count(
                        "SELECT count(*) FROM webhook_worker.dead_letter_jobs WHERE kind = 'webhook.deliver'")) == 1
                })
            try await stopAll(worker, sender, fixture)
            let id: UUID = try #require(
                try await database.scalar("SELECT delivery_id FROM webhook_worker.webhook_deliveries"))
            let deadLetter: Int64 = try #require(
                try await database.scalar(
                    "SELECT id FROM webhook_worker.dead_letter_jobs WHERE kind = 'webhook.deliver'"))
            let liveJobs = """
                SELECT count(*) FROM webhook_worker.jobs WHERE kind = 'webhook.deliver' \
                AND payload ->> 'delivery_id' = $1
                """
            try await database.withConnection { connection in
                // The operator resends the delivery, then retries its older dead letter.
                _ = try await Deliveries(connection).resend(id)
                let deadLetters = DeadLetters(connection, schema: database.queue)
                await #expect(throws: (any Error).self) { try await deadLetters.requeue(id: deadLetter) }
                _ = try await deadLetters.requeueAll(DeadLetters.Filter(kind: "webhook.deliver"), batchSize: 10)
            }
            #expect(try await database.count(liveJobs, [id.uuidString.lowercased()]) == 1)
        }
    }
}
