import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookReceiver
@testable import webhook_worker

/// The optional trigger never fails the web app's insert; what it could not enqueue, the
/// worker's catch-up enqueues (docs/enqueueing.md, "the optional trigger").
@Suite("Integration catch-up", .timeLimit(.minutes(4)))
struct IntegrationCatchUpTests {
    @Test("the catch-up's settings: 1m and 1d by default, flags and variables, off")
    func settings() throws {
        let defaults = try #require(try RunCommand.parse([]).settings(environment: [:]).catchUp)
        #expect(defaults.interval == .seconds(60) && defaults.window == .seconds(86_400))
        let set = try #require(
            try RunCommand.parse(["--catch-up-window", "2h"]).settings(environment: [
                "WEBHOOK_CATCH_UP_INTERVAL": "5s"
            ]).catchUp)
        #expect(set.interval == .seconds(5) && set.window == .seconds(7200))
        #expect(try RunCommand.parse(["--catch-up-interval", "off"]).settings(environment: [:]).catchUp == nil)
        #expect(try RunCommand.parse([]).settings(environment: ["WEBHOOK_CATCH_UP_INTERVAL": "OFF"]).catchUp == nil)
    }

    @Test("an event the optional trigger could not enqueue is enqueued by the catch-up, counted, and delivered")
    func lostEventIsDelivered() async throws {
        try await withLeastPrivilegeDatabase { setup in
            let receiver = try await WebhookReceiverServer.start { _ in .ok }
            defer { Task { await receiver.stop() } }
            try await setup.installOptionalTriggers()
            try await setup.database.script(
                """
                INSERT INTO "User" (id) VALUES ('user-1');
                INSERT INTO "IntegrationDefinitionV2" (id, name, slug, icon) VALUES ('def', 'Linear', 'linear', 'i');
                INSERT INTO "OAuthClient" (id, "clientId", name, "allowedScopes", "webhookUrl")
                VALUES ('c1', 'pub-1', 'One', 'integration', 'http://127.0.0.1:\(receiver.port)/c1');
                INSERT INTO "OAuthIntegrationGrant" (id, "clientId", "userId") VALUES ('g1', 'c1', 'user-1');
                """)
            let port = try freeLoopbackPort()
            let worker = try startWorker(
                [
                    "run", "--allow-http", "--allow-private-networks", "--poll-interval", "200ms",
                    "--catch-up-interval", "1s", "--http-port", "\(port)", "--http-host", "127.0.0.1",
                ],
                environment: ["DATABASE_URL": setup.conninfo(as: setup.worker)])
            defer { worker.signal(SIGKILL) }
            let insertAccount = """
                INSERT INTO "IntegrationAccount" (id, "accountId", "integrationDefinitionId", "integratedById")
                VALUES ($1, $1, 'def', 'user-1')
                """

            // One account whose trigger works, then one whose trigger's insert fails: the web
            // app's insert still succeeds, without a job.
            try await setup.query(as: setup.webApp, insertAccount, ["acct-ok"])
            try await setup.database.script(
                """
                ALTER TABLE webhook_worker.jobs ADD CONSTRAINT refuse_connected
                    CHECK (kind <> 'integration.connected') NOT VALID
                """)
            try await setup.query(as: setup.webApp, insertAccount, ["acct-lost"])
            #expect(
                try await setup.database.count(
                    "SELECT count(*) FROM webhook_worker.jobs WHERE payload ->> 'integration_account_id' = 'acct-lost'")
                    == 0)
            try await setup.database.script("ALTER TABLE webhook_worker.jobs DROP CONSTRAINT refuse_connected")

            let delivered = """
                SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'delivered' \
                AND integration_account_id = $1
                """
            #expect(
                await eventually(timeout: .seconds(60)) {
                    (try? await setup.database.count(delivered, ["acct-lost"])) == 1
                }, "\(worker.output)")
            #expect(try await setup.database.count(delivered, ["acct-ok"]) == 1)
            // The sweep that found acct-lost looked at acct-ok too (older), and left it alone.
            #expect(try await setup.database.count("SELECT count(*) FROM webhook_worker.webhook_deliveries") == 2)
            #expect(receiver.received.count == 2)

            #expect(
                await eventually {
                    await scrapeMetrics(port: port).split(separator: "\n").contains(
                        "webhook_worker_integration_events_caught_up_total 1")
                })
            #expect(worker.output.contains("enqueued integration.connected events that were never enqueued"))
            worker.signal(SIGTERM)
            #expect(await worker.wait(timeout: .seconds(60)) == 0, "\(worker.output)")
        }
    }
}
