import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookWorkerSchema

/// The deliveries' operations as a program (the CLI, a console) calls them.
@Suite("Delivery operations", .timeLimit(.minutes(2)))
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
}
