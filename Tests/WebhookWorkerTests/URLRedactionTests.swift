import Foundation
import JobQueue
import LibPQ
import Logging
@testable import TestSupport
import Testing
import WebhookDelivery

@testable import webhook_worker

/// A webhook URL's secrets (user names, passwords, path tokens, the query) never reach the stored
/// attempts, the job's errors or the console's pages.
@Suite("URL redaction", .timeLimit(.minutes(4)))
struct URLRedactionTests {
    @Test(
        "the rule: origin kept, user and query masked, path words kept up to the first secret-looking segment",
        arguments: [
            (
                "https://hooks.example/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
                "https://hooks.example/services/***/***/***"
            ),
            (
                "https://discord.example/api/webhooks/1234567890/abcDEF-ghi",
                "https://discord.example/api/webhooks/***/***"
            ),
            ("https://user:pw@Example.COM:8443/hook?token=abc#frag", "https://***@example.com:8443/hook?***"),
            ("https://alice@example.com/", "https://***@example.com/"),
            ("https://example.com/api/v2/webhook-receiver/", "https://example.com/api/v2/webhook-receiver/"),
            ("https://example.com/hooks/abcdefghijklmnopq", "https://example.com/hooks/***"),
            ("https://example.com/hooks/a%2Fb/next", "https://example.com/hooks/***/***"),
            ("https://example.com/in/Upper/then", "https://example.com/in/***/***"),
            ("http://[::1]:8080/x", "http://[::1]:8080/x"),
            ("https://example.com?", "https://example.com"),
            ("javascript:alert(1)", "(unparseable URL)"),
            (" http://example.com/", "(unparseable URL)"),
        ])
    func rule(url: String, shown: String) {
        #expect(URLRedaction.redacted(url) == shown)
        // Twice is once: rows stored under an older rule are redacted again when shown.
        #expect(URLRedaction.redacted(shown) == shown)
    }

    @Test("a Slack-style URL with a user and a query is stored, failed and shown with only its origin and its words")
    func storedAndShownMasked() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database) { _ in .status(500) }
            let port = fixture.receiver.port
            let secrets = ["hookuser", "hunter2", "T0001ABCD", "B0002EFGH", "xoxbSecretTail", "s3cr3t"]
            try await fixture.addClient(
                "slack",
                url: "http://hookuser:hunter2@127.0.0.1:\(port)/services/T0001ABCD/B0002EFGH/xoxbSecretTail"
                    + "?token=s3cr3t")
            let masked = "http://***@127.0.0.1:\(port)/services/***/***/***?***"
            let (worker, sender) = fixture.startWorker(schedule: [.milliseconds(50)])
            try await fixture.connectIntegration()
            #expect(
                try await eventually {
                    try await database.count("SELECT count(*) FROM webhook_worker.dead_letter_jobs") == 1
                })
            try await stopAll(worker, sender, fixture)
            #expect(fixture.requests(to: "services/T0001ABCD/B0002EFGH/xoxbSecretTail?token=s3cr3t").count == 2)

            let stored = try await database.query("SELECT url FROM webhook_worker.delivery_attempts").rows.map {
                try $0.decode("url", as: String.self)
            }
            #expect(stored == [masked, masked])
            let error = try #require(
                try await database.scalar("SELECT last_error FROM webhook_worker.dead_letter_jobs", as: String.self))
            #expect(error.contains(masked), "\(error)")
            for secret in secrets { #expect(!error.contains(secret), "\(secret) in \(error)") }

            let pool = database.pool(size: 2)
            try await withTeardown {
                let console = Console(
                    database: pool, tokens: ConsoleTests.tokens, readOnly: true, logger: Logger(label: "redaction"))
                let id = try #require(try await fixture.delivery(client: "slack")?.decode("delivery_id", as: UUID.self))
                for path in ["/console/deliveries/\(id.uuidString.lowercased())", "/console/endpoints"] {
                    let page = await console.respond(ConsoleTests.get(path))
                    #expect(page.status == 200, "\(path)")
                    #expect(page.body.contains(masked), "\(path)")
                    for secret in secrets { #expect(!page.body.contains(secret), "\(secret) on \(path)") }
                }
            } teardown: {
                await pool.close()
            }
        }
    }
}
