import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing
@testable import WebhookDelivery
import WebhookReceiver

@Suite("Secret rotation", .timeLimit(.minutes(4)))
struct SecretRotationTests {
    @Test(
        """
        during the overlap webhook-signature carries the new and the retired secret's signatures; after it, only the \
        new
        """
    )
    func overlap() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database)
            let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            let new = "rotated-secret-\(UUID().uuidString)"
            try await fixture.addClient("rotating", secret: old)
            let trigger = try String(
                contentsOfFile: TestDatabase.repoRoot + "/sql/optional/keep_retired_webhook_secrets.sql",
                encoding: .utf8)
            try await database.script(trigger)
            try await database.query(#"UPDATE "OAuthClient" SET "webhookSecret" = $1 WHERE id = 'rotating'"#, [new])
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.retired_secrets") == 1)

            let (worker, sender) = fixture.startWorker()
            try await fixture.connectIntegration()
            #expect(await eventually { fixture.requests(to: "rotating").count == 1 })
            let first = try #require(fixture.requests(to: "rotating").first)
            let id = try #require(first.header("webhook-id"))
            let timestamp = try #require(first.header("webhook-timestamp"))
            let signatures = try #require(first.header("webhook-signature"))
            #expect(signatures.split(separator: " ").count == 2)
            #expect(
                WebhookSignature.verifyStandard(signatures, secret: new, id: id, timestamp: timestamp, body: first.body)
            )
            #expect(
                WebhookSignature.verifyStandard(signatures, secret: old, id: id, timestamp: timestamp, body: first.body)
            )
            // The seed's header stays on the current secret only.
            #expect(
                WebhookSignature.verifyHex(
                    try #require(first.header("X-Webhook-Secret")), secret: new, body: first.body))

            // Past the overlap (24 h by default), the old secret signs no more, and prune deletes it.
            try await database.query(
                "UPDATE webhook_worker.retired_secrets SET retired_at = now() - interval '25 hours'")
            try await fixture.connectIntegration()
            #expect(await eventually { fixture.requests(to: "rotating").count >= 2 })
            try await stopAll(worker, sender, fixture)
            let later = fixture.requests(to: "rotating")[1]
            let single = try #require(later.header("webhook-signature"))
            #expect(single.split(separator: " ").count == 1)
            #expect(
                WebhookSignature.verifyStandard(
                    single, secret: new, id: try #require(later.header("webhook-id")),
                    timestamp: try #require(later.header("webhook-timestamp")), body: later.body))

            let (pruned, status) = try await CommandLineTests.run(
                ["prune", "--older-than", "30d"], environment: ["DATABASE_URL": database.conninfo])
            #expect(status == 0, "\(pruned)")
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.retired_secrets") == 0)
        }
    }

    @Test("secrets retire reads the old secret from standard input and never prints it")
    func retireFromStandardInput() async throws {
        try await withTestDatabase(appTables: true) { database in
            try await database.query(#"INSERT INTO "OAuthClient" (id, "clientId", name) VALUES ('c1', 'pub-1', 'One')"#)
            let secret = "old-secret-\(UUID().uuidString)"
            // Named by its public clientId, kept under its id.
            let (output, status) = try await CommandLineTests.run(
                ["secrets", "retire", "--client", "pub-1"], environment: ["DATABASE_URL": database.conninfo],
                input: secret + "\n")
            #expect(status == 0, "\(output)")
            #expect(!output.contains(secret))
            #expect(
                try await database.scalar(
                    "SELECT secret FROM webhook_worker.retired_secrets WHERE oauth_client_id = 'c1'", as: String.self)
                    == secret)
            // A name that is no client is refused, and keeps nothing.
            let (unknown, unknownStatus) = try await CommandLineTests.run(
                ["secrets", "retire", "--client", "nobody"], environment: ["DATABASE_URL": database.conninfo],
                input: secret + "\n")
            #expect(unknownStatus == 1 && unknown.contains("no OAuth client nobody"), "\(unknown)")
            #expect(!unknown.contains(secret))
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.retired_secrets") == 1)
            let (empty, emptyStatus) = try await CommandLineTests.run(
                ["secrets", "retire", "--client", "c1"], environment: ["DATABASE_URL": database.conninfo])
            #expect(emptyStatus == 2, "\(empty)")
        }
    }

    @Test(
        """
        secrets retire keeps the secret byte for byte: one trailing CRLF or LF is dropped, nothing else (spaces stay)
        """
    )
    func retireLineEndings() async throws {
        try await withTestDatabase(appTables: true) { database in
            try await database.query(#"INSERT INTO "OAuthClient" (id, "clientId", name) VALUES ('c1', 'pub-1', 'One')"#)
            // In Swift "\r\n" is one Character: trimming by Characters once cut the last one of the secret too.
            let cases: [(input: String, kept: String)] = [
                ("whsec_crlf1234\r\n", "whsec_crlf1234"), ("whsec_lf5678\n", "whsec_lf5678"),
                ("whsec_bare9012", "whsec_bare9012"), ("trailing space \n", "trailing space "),
                ("two breaks\n\n", "two breaks\n"), ("lone cr\r", "lone cr\r"),
            ]
            for (input, kept) in cases {
                let (output, status) = try await CommandLineTests.run(
                    ["secrets", "retire", "--client", "c1"], environment: ["DATABASE_URL": database.conninfo],
                    input: input)
                #expect(status == 0, "\(output)")
                let stored = try await database.scalar(
                    "DELETE FROM webhook_worker.retired_secrets RETURNING secret", as: String.self)
                #expect(stored.map { Array($0.utf8) } == Array(kept.utf8), "\(input.debugDescription)")
            }
        }
    }

    @Test(
        """
        a client whose secret is set to NULL sends unsigned, even while its retired secret is in the overlap
        """
    )
    func nullSecretSendsUnsigned() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database)
            try await fixture.addClient("unsigning", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            let trigger = try String(
                contentsOfFile: TestDatabase.repoRoot + "/sql/optional/keep_retired_webhook_secrets.sql",
                encoding: .utf8)
            try await database.script(trigger)
            try await database.query(#"UPDATE "OAuthClient" SET "webhookSecret" = NULL WHERE id = 'unsigning'"#)
            // The old secret is retired and within the overlap: it would sign, were NULL not a decision.
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.retired_secrets") == 1)

            let (worker, sender) = fixture.startWorker()
            try await fixture.connectIntegration()
            #expect(await eventually { fixture.requests(to: "unsigning").count == 1 })
            try await stopAll(worker, sender, fixture)
            let request = try #require(fixture.requests(to: "unsigning").first)
            for header in ["webhook-signature", "webhook-id", "webhook-timestamp", "X-Webhook-Secret"] {
                #expect(request.header(header) == nil, "\(header)")
            }
            #expect(await fixture.status(client: "unsigning") == "delivered")
            // The decision is in what the re-check hands the sender: no retired secret to sign with.
            let id = try #require(try await fixture.delivery(client: "unsigning")?.decode("delivery_id", as: UUID.self))
            let overlap = PQInterval(.seconds(86_400))
            let recheck = try await database.withConnection { connection in
                try await connection.query(
                    Recipients.recheck, [PQArray([id]), overlap, DeliveryID.since([id])]
                ).first
            }
            #expect(try #require(recheck).decodeIfPresent("retired_secrets", as: String.self) == nil)
        }
    }
}
