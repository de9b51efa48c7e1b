import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery

@testable import webhook_worker

extension ConsoleTests {
    /// Three more deliveries of client-1 (besides the failed one of ``withConsole(tokens:readOnly:_:)``):
    /// delivered and failed within the hour, one failed a day ago.
    static func seedRange(_ database: TestDatabase) async throws {
        try await database.script(
            """
            INSERT INTO webhook_worker.webhook_deliveries
                (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload, \
            status, created_at)
            VALUES (gen_random_uuid(), 'integration.connected', 2, 'acct-1', 'user-1', 'client-1', '{}', 'delivered', \
            now() - interval '10 minutes'),
                   (gen_random_uuid(), 'integration.connected', 3, 'acct-1', 'user-1', 'client-1', '{}', 'failed', \
            now() - interval '20 minutes'),
                   (gen_random_uuid(), 'integration.connected', 4, 'acct-1', 'user-1', 'client-1', '{}', 'failed', \
            now() - interval '1 day');
            """)
    }

    @Test("Resend all matching: the count first (nothing changes), then the resend, audited once with its counts")
    func resendAllMatching() async throws {
        try await Self.withConsole { console, database, _ in
            try await Self.seedRange(database)
            let search = ["client": "acme-public", "status": "failed", "from": "2h"]
            let listed = await console.respond(Self.get("/console/deliveries", query: search))
            #expect(listed.body.contains("Resend all matching"))
            let noRange = await console.respond(Self.get("/console/deliveries", query: ["status": "failed"]))
            #expect(!noRange.body.contains("Resend all matching") && noRange.body.contains("Created from"))

            let preview = await console.respond(Self.get("/console/deliveries/resend", query: search))
            #expect(preview.status == 200)
            #expect(preview.body.contains("2 deliveries of OAuth client client-1 match"), "\(preview.body)")
            #expect(preview.body.contains("Resend 2 now") && preview.body.contains("name=\"until\""))
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 0)
            let missing = await console.respond(Self.get("/console/deliveries/resend", query: ["status": "failed"]))
            #expect(missing.status == 400)

            // The confirmation's form, as the page wrote it.
            var form: [String: String] = [:]
            for match in preview.body.matches(of: /<input type="hidden" name="([a-z_]+)" value="([^"]*)"/) {
                form[String(match.output.1)] = String(match.output.2).replacingOccurrences(of: "&amp;", with: "&")
            }
            #expect(form["client"] == "client-1" && form["status"] == "failed" && form["until"] != nil)
            let done = await console.respond(Self.post("/console/deliveries/resend", form))
            #expect(done.status == 303 && done.header("Location")?.hasPrefix("/console/deliveries?") == true)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 2)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'failed'") == 1)

            // Again, any status: those two are live now, skipped; the delivered one is resent. One audit row each.
            form["status"] = nil
            #expect(await console.respond(Self.post("/console/deliveries/resend", form)).status == 303)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 3)
            let audit = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(audit.map(\.action) == ["delivery.resend_range", "delivery.resend_range"])
            #expect(audit.allSatisfy { $0.actor == "alice" && $0.target == "endpoint:client:client-1" })
            #expect(audit[1].detail.contains(#""resent": "2""#) && audit[1].detail.contains(#""status": "failed""#))
            #expect(audit[0].detail.contains(#""resent": "1""#) && audit[0].detail.contains(#""skipped_live": "2""#))
            #expect(audit[0].outcome == "ok")

            // A form without its pinned end is refused (and audited as failed).
            form["until"] = nil
            #expect(await console.respond(Self.post("/console/deliveries/resend", form)).status == 303)
            let refused = try await database.withConnection { try await AuditLog($0).recent(limit: 1) }
            #expect(refused.first?.outcome.hasPrefix("failed: resend by range") == true)
        }
    }

    @Test("Resend all matching on a read-only console: the count shows, the button does not, the POST is 403")
    func resendAllMatchingReadOnly() async throws {
        try await Self.withConsole(readOnly: true) { console, database, _ in
            try await Self.seedRange(database)
            let search = ["client": "client-1", "from": "2h"]
            let listed = await console.respond(Self.get("/console/deliveries", query: search))
            #expect(!listed.body.contains("Resend all matching"))
            let preview = await console.respond(Self.get("/console/deliveries/resend", query: search))
            #expect(preview.status == 200 && preview.body.contains("3 deliveries of OAuth client client-1 match"))
            #expect(!preview.body.contains("method=\"post\""))
            let post = await console.respond(
                Self.post(
                    "/console/deliveries/resend",
                    ["client": "client-1", "from": "2026-01-01T00:00:00Z", "until": "2099-01-01T00:00:00Z"]))
            #expect(post.status == 403)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 0)
            let audit = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(audit.first?.outcome == "refused: read-only")
        }
    }
}
