import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing
@testable import WebhookDelivery
import WebhookReceiver

/// `webhook.test` events (``TestEvents``) through a real worker to a loopback receiver that
/// verifies both signatures and answers 401 when one does not verify.
@Suite("Test events", .timeLimit(.minutes(4)))
struct TestEventTests {
    static let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    /// 200 when both signatures verify with ``secret``, 401 otherwise; 503 for `/down`.
    static func verifying(_ request: ReceivedWebhook) -> ReceiverResponse {
        if request.uri == "/down" { return .status(503) }
        guard let hex = request.header("X-Webhook-Secret"), let id = request.header("webhook-id"),
            let timestamp = request.header("webhook-timestamp"), let signature = request.header("webhook-signature"),
            WebhookSignature.verifyHex(hex, secret: secret, body: request.body),
            WebhookSignature.verifyStandard(signature, secret: secret, id: id, timestamp: timestamp, body: request.body)
        else { return .status(401, body: "bad signature") }
        return .ok
    }

    @Test("a test event is signed like any webhook, needs no grant or scope, and is recorded as a delivery")
    func delivered() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database, respond: Self.verifying)
            // No grant to any user and no integration scope: a test event needs neither.
            try await fixture.addClient("alpha", scopes: "profile", secret: Self.secret, grantUser: nil)
            let (worker, sender) = fixture.startWorker()
            let connection = try await database.connect()
            let sent = try await TestEvents(connection).send(clientID: "alpha")
            await connection.close()
            #expect(await eventually { await fixture.status(client: "alpha") == "delivered" })
            try await stopAll(worker, sender, fixture)

            let request = try #require(fixture.requests(to: "alpha").first)
            let id = sent.deliveryID.uuidString.lowercased()
            #expect(request.header("X-Webhook-Event") == "webhook.test")
            #expect(request.header("X-Webhook-Delivery") == id)
            #expect(request.header("webhook-id") == id)
            #expect(request.header("Content-Type") == "application/json")
            let body = try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
            #expect(body["event"] as? String == "webhook.test")
            #expect(body["delivery_id"] as? String == id)
            #expect(body["oauth_client_id"] as? String == "alpha")
            #expect(body["timestamp"] is String && body["message"] is String)
            let row = try #require(try await fixture.delivery(client: "alpha"))
            #expect(try row.decode("event", as: String.self) == "webhook.test")
            #expect(try row.decode("source_job_id", as: Int64.self) == sent.jobID)
            let attempts = try await fixture.attempts(client: "alpha")
            #expect(attempts.count == 1)
            #expect(try attempts.first?.decode("http_status", as: Int.self) == 200)
        }
    }

    @Test("a failing test event counts against the endpoint's circuit and is retried, as any delivery")
    func failureCounts() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database, respond: Self.verifying)
            try await fixture.addClient("down", url: fixture.url("down"), secret: Self.secret)
            let (worker, sender) = fixture.startWorker(schedule: [.seconds(30)])
            let connection = try await database.connect()
            _ = try await TestEvents(connection).send(clientID: "down")
            await connection.close()
            #expect(await fixture.eventuallyRetryScheduled())
            try await stopAll(worker, sender, fixture)

            #expect(await fixture.status(client: "down") == "pending")
            #expect(try await fixture.attempts(client: "down").first?.decode("http_status", as: Int.self) == 503)
            #expect(
                try await database.count(
                    "SELECT consecutive_failures FROM webhook_worker.endpoints WHERE key = 'client:down'") == 1)
        }
    }

    @Test("the network policy applies to a test event: a refused destination fails at once")
    func policyApplies() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database, respond: Self.verifying)
            try await fixture.addClient("alpha", secret: Self.secret)
            let (worker, sender) = fixture.startWorker(allowPrivateNetworks: false)
            let connection = try await database.connect()
            _ = try await TestEvents(connection).send(clientID: "alpha")
            await connection.close()
            #expect(await eventually { await fixture.status(client: "alpha") == "failed" })
            try await stopAll(worker, sender, fixture)
            #expect(
                try await fixture.attempts(client: "alpha").first?.decode("error_class", as: String.self)
                    == "policy_refused")
            #expect(fixture.receiver.received.isEmpty)
        }
    }

    @Test("no test event for a client that does not exist, is inactive or has no webhook URL")
    func refused() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database)
            try await fixture.addClient("inactive", active: false)
            try await fixture.addClient("no-url", url: "  ")
            let connection = try await database.connect()
            for client in ["missing", "inactive", "no-url"] {
                await #expect(throws: TestEvents.Refusal.self, "\(client)") {
                    _ = try await TestEvents(connection).send(clientID: client)
                }
            }
            await connection.close()
            await fixture.receiver.stop()
            #expect(try await fixture.deliveries().isEmpty)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 0)
        }
    }
}
