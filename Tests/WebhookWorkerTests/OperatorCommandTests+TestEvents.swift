import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookReceiver

/// `endpoints test`: the built binary queues a `webhook.test` event, a worker in this process
/// sends it to a loopback receiver that checks its signature, and the command prints the outcome.
extension OperatorCommandTests {
    @Test("endpoints test sends a signed webhook.test, waits for its outcome, and is audited")
    func endpointsTest() async throws {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database) { request in
                guard let signature = request.header("X-Webhook-Secret"),
                    WebhookSignature.verifyHex(signature, secret: secret, body: request.body)
                else { return .status(401) }
                return .ok
            }
            try await fixture.addClient("alpha", secret: secret)

            // No worker yet: the command gives up after its timeout, and the delivery stays queued.
            let waited = try await Self.cli("endpoints test alpha --timeout 1s", database)
            #expect(waited.status == 1, "\(waited.output)")
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.webhook_deliveries") == 1)
            #expect(try await Self.cli("endpoints test nobody", database).status == 1)

            let (worker, sender) = fixture.startWorker()
            let (output, status) = try await runWorker(
                ["endpoints", "test", "alpha-public", "--actor", "ada", "--timeout", "60s", "--json"],
                environment: ["DATABASE_URL": database.conninfo], standardError: .discarded)
            try await stopAll(worker, sender, fixture)

            #expect(status == 0, "\(output)")
            let shown = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
            #expect(shown["status"] as? String == "delivered")
            #expect(shown["event"] as? String == "webhook.test")
            #expect((shown["attempt_history"] as? [[String: Any]])?.first?["http_status"] as? Int == 200)
            #expect(fixture.receiver.received.contains { $0.header("X-Webhook-Event") == "webhook.test" })
            let audited = try await database.query(
                "SELECT actor, action, target, detail->>'via' AS via FROM webhook_worker.console_audit ORDER BY id")
            #expect(audited.rows.count == 2)
            let last = try #require(audited.rows.last)
            #expect(try last.decode("actor", as: String.self) == "operator (ada)")
            #expect(try last.decode("action", as: String.self) == "endpoint.test")
            #expect(try last.decode("target", as: String.self) == "endpoint:client:alpha")
            #expect(try last.decode("via", as: String.self) == "cli")
        }
    }
}
