import AsyncHTTPClient
import Foundation
import JobQueue
import LibPQ
import Logging
import Synchronization
@testable import TestSupport
import Testing
@testable import WebhookDelivery
import WebhookReceiver

@Suite("Partial failure: deliveries", .timeLimit(.minutes(4)))
struct DeliveryPartialFailureTests {
    @Test("a 2xx that arrived before a forced shutdown is recorded as delivered, not sent again")
    func successAtForcedShutdown() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database) { _ in .stallAfterHead(200) }
            try await fixture.addClient("stalls")
            let (worker, sender) = fixture.startWorker(requestTimeout: .seconds(20)) {
                $0.shutdownTimeout = .milliseconds(500)
                $0.shutdownGrace = .seconds(3)
            }
            try await fixture.connectIntegration()
            #expect(await eventually { fixture.requests(to: "stalls").count == 1 })
            try await stopAll(worker, sender, fixture)
            #expect(await fixture.status(client: "stalls") == "delivered")
            #expect(
                try await database.count(
                    """
                    SELECT count(*) FROM webhook_worker.job_attempts WHERE kind = 'webhook.deliver' AND outcome = \
                    'succeeded'
                    """
                ) == 1)
        }
    }

    @Test("a connection to a refused peer address (DNS rebinding) ends the attempt as policy_refused at once")
    func rebindingRefusedAtConnect() async throws {
        let receiver = try await WebhookReceiverServer.start { _ in .ok }
        var policy = NetworkPolicy(allowHTTP: true, allowPrivateNetworks: false)
        // The check before the request sees a public address; the connection goes to loopback.
        policy.resolver = { _, _ in [.init(bytes: [93, 184, 216, 34], text: "93.184.216.34")] }
        let configuration = WebhookDeliveryConfiguration(
            requestTimeout: .seconds(20), connectTimeout: .seconds(10), allowHTTP: true, allowPrivateNetworks: false)
        let sender = WebhookSender(
            configuration: configuration, policy: policy, eventLoopGroup: HTTPClient.defaultEventLoopGroup)
        let result = await sender.post(
            url: "http://localhost:\(receiver.port)/rebound", headers: [], body: Array("{}".utf8),
            logger: TestDatabase.logger)
        try await sender.shutdown()
        await receiver.stop()
        #expect(result.errorClass == .policyRefused, "\(result)")
        #expect(result.isPermanent)
        // "At once": well inside the 10 s connect timeout, with room for a loaded machine.
        #expect(result.duration < .seconds(5))
        #expect(receiver.received.isEmpty)
    }

    @Test("the web app locking OAuthClient for three leases: every event delivered once, no attempt lost")
    func tableLockedForThreeLeases() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database)
            try await fixture.addClient("alpha")
            try await fixture.addClient("beta")
            let replicas = (0..<2).map { _ in
                fixture.startWorker(requestTimeout: .seconds(1)) {
                    $0.lease = .seconds(3)
                    $0.lockTimeout = .milliseconds(500)
                    $0.pollInterval = .milliseconds(200)
                }
            }
            let locker = try await database.connect()
            try await locker.execute(script: "BEGIN; LOCK TABLE \"OAuthClient\" IN ACCESS EXCLUSIVE MODE", name: "lock")
            let clock = ContinuousClock()
            let locked = clock.now
            for _ in 0..<30 {
                try await fixture.connectIntegration()
                try await Task.sleep(for: .milliseconds(150))
            }
            try await Task.sleep(until: locked + .seconds(9))
            try await locker.execute(script: "COMMIT", name: "unlock")
            await locker.close()
            let delivered = try await eventually(timeout: .seconds(60), every: .milliseconds(200)) {
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'delivered'") == 60
            }
            for (worker, sender) in replicas { try await worker.stop(); try await sender.shutdown() }
            await fixture.receiver.stop()
            #expect(delivered)
            let ids = fixture.receiver.received.compactMap { $0.header("X-Webhook-Delivery") }
            #expect(ids.count == 60, "each delivery sent once")
            #expect(Set(ids).count == ids.count, "no delivery sent twice")
            #expect(
                try await database.count("SELECT count(*) FROM webhook_worker.job_attempts WHERE outcome = 'lost'") == 0
            )
            #expect(
                try await database.count("SELECT count(*) FROM webhook_worker.job_attempts WHERE outcome = 'released'")
                    > 0)
        }
    }
}
