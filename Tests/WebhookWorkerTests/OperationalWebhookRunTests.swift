import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookReceiver

/// `run --operational-url`: the built binary relays operational events to the web app, signed
/// with `WEBHOOK_OPERATIONAL_SECRET`, which never reaches its log.
@Suite("Operational webhooks through run", .timeLimit(.minutes(4)))
struct OperationalWebhookRunTests {
    @Test("a replica POSTs an endpoint disabled by an operator, signed; its log never shows a secret")
    func runRelays() async throws {
        let secret = "whsec_cnVuLXJlbGF5LXNlY3JldC1uZXZlci1sb2dnZWQ"
        try await withTestDatabase(appTables: true) { database in
            let receiver = try await WebhookReceiverServer.start { request in
                guard let id = request.header("webhook-id"), let timestamp = request.header("webhook-timestamp"),
                    let signature = request.header("webhook-signature"),
                    WebhookSignature.verifyStandard(
                        signature, secret: secret, id: id, timestamp: timestamp, body: request.body)
                else { return .status(401) }
                return .status(204)
            }
            let worker = try startWorker(
                [
                    "run", "--poll-interval", "200ms", "--log-level", "debug", "--http-port",
                    "\(try freeLoopbackPort())",
                    "--http-host", "127.0.0.1", "--console",
                    "--operational-url", "http://127.0.0.1:\(receiver.port)/ops",
                ],
                environment: [
                    "DATABASE_URL": database.conninfo, "WEBHOOK_OPERATIONAL_SECRET": secret,
                    "WORKER_CONSOLE_TOKEN": "ada:tok-Zq9vXcOnsoleSecret",
                ])
            defer { worker.signal(SIGKILL) }

            try await database.query("SELECT webhook_worker.set_endpoint_enabled('client:c9', false, 'operator (ada)')")
            #expect(
                await eventually {
                    (try? await database.count(
                        "SELECT count(*) FROM webhook_worker.endpoint_events WHERE posted_at IS NOT NULL")) == 1
                })
            let request = try #require(receiver.received.last)
            #expect(request.uri == "/ops" && request.header("X-Webhook-Event") == "endpoint.endpoint_disabled")
            let body = try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
            let data = try #require(body["data"] as? [String: Any])
            #expect(data["oauth_client_id"] as? String == "c9" && data["reason"] as? String == "operator (ada)")

            worker.signal(SIGTERM)
            #expect(await worker.wait(timeout: .seconds(60)) == 0, "\(worker.output)")
            #expect(worker.output.contains("operational_secret=set"), "\(worker.output)")
            // ServiceLifecycle logs every service's description at start (debug): none may carry one.
            let leaks = worker.output.split(separator: "\n").filter {
                $0.contains("cnVuLXJlbGF5") || $0.contains("Zq9vXcOnsoleSecret")
            }
            #expect(leaks.isEmpty, "\(leaks)")
            await receiver.stop()
        }
    }
}
