import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery

extension OperatorCommandTests {
    @Test("deliveries resend --client --since: a dry run, then batches, live ones skipped, audited; bad usage is 2")
    func resendRange() async throws {
        try await withTestDatabase(appTables: true) { database in
            try await database.script(
                """
                INSERT INTO "OAuthClient" (id, "clientId", name, "allowedScopes", "webhookUrl", "isActive")
                VALUES ('client-a', 'pub-a', 'Alpha', 'integration', 'https://a.example/hook', true);
                INSERT INTO webhook_worker.webhook_deliveries
                    (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload, \
                status, created_at)
                SELECT gen_random_uuid(), 'integration.connected', n, 'acct-1', 'user-1', 'client-a', '{}', s, t
                FROM (VALUES (1, 'failed', now() - interval '10 minutes'),
                             (2, 'failed', now() - interval '20 minutes'),
                             (3, 'failed', now() - interval '30 minutes'),
                             (4, 'delivered', now() - interval '40 minutes'),
                             (5, 'failed', now() - interval '3 hours')) AS v(n, s, t);
                """)
            let jobs = "SELECT count(*) FROM webhook_worker.jobs WHERE kind = 'webhook.deliver'"

            let dry = try #require(
                try await Self.json("deliveries resend --client pub-a --since 2h --status failed --dry-run", database)
                    as? [String: Any])
            #expect(dry["matched"] as? Int == 3 && dry["resent"] as? Int == 3 && dry["dry_run"] as? Bool == true)
            #expect(dry["client"] as? String == "client-a")
            #expect(try await database.count(jobs) == 0)
            let (text, status) = try await Self.cli(
                "deliveries resend --client client-a --since 2h --status failed --dry-run", database)
            #expect(status == 0 && text.contains("3 deliveries match") && text.contains("would resend 3"), "\(text)")
            #expect(try await database.withConnection { try await AuditLog($0).recent() }.isEmpty)

            let done = try #require(
                try await Self.json(
                    "deliveries resend --client client-a --since 2h --status failed --batch-size 2 --actor ops",
                    database) as? [String: Any])
            #expect(done["resent"] as? Int == 3 && done["skipped_live"] as? Int == 0 && done["batches"] as? Int == 2)
            #expect(try await database.count(jobs) == 3)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'pending'") == 3)

            // The whole range again: the three are live now and skipped; the delivered one is resent.
            let (again, againStatus) = try await Self.cli(
                "deliveries resend --client client-a --since 2h --batch 10", database)
            #expect(againStatus == 0, "\(again)")
            #expect(
                again.contains("resent 1 of 4") && again.contains("skipped 3 already queued or in flight"), "\(again)")
            #expect(try await database.count(jobs) == 4)

            let audit = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(audit.count == 2 && audit.allSatisfy { $0.action == "delivery.resend_range" && $0.outcome == "ok" })
            #expect(audit.last?.actor == "operator (ops)" && audit.last?.target == "endpoint:client:client-a")
            #expect(audit.last?.detail.contains(#""resent": "3""#) == true)
            #expect(audit.last?.detail.contains(#""status": "failed""#) == true)

            // Nothing in the range: 1. Bad usage: 2.
            #expect(try await Self.cli("deliveries resend --client client-a --since 1m", database).status == 1)
            #expect(try await Self.cli("deliveries resend --client client-a", database).status == 2)
            #expect(try await Self.cli("deliveries resend --client client-a --since soon", database).status == 2)
            #expect(
                try await Self.cli(
                    "deliveries resend --client client-a --since 2h --status dead_lettered", database
                ).status == 2)
            #expect(
                try await Self.cli(
                    "deliveries resend 11111111-1111-4111-8111-111111111111 --dry-run", database
                ).status == 2)
            #expect(
                try await Self.cli("deliveries resend --client client-a --since 2h --batch-size 0", database).status
                    == 2)
        }
    }
}
