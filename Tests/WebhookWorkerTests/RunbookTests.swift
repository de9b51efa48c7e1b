import Foundation
import LibPQ
@testable import TestSupport
import Testing

/// The runbook of docs/operations.md, run as written: every `webhook-worker ...` command and SQL
/// query in it, in its order, against a database where its situations hold (a delivery that
/// died after failed attempts, a disabled endpoint, an event the catch-up enqueued).
@Suite("Runbooks", .timeLimit(.minutes(4)))
struct RunbookTests {
    /// The inline code of the runbook section, in order, each on one line.
    static func runbookSpans() throws -> [String] {
        let text = try String(contentsOfFile: TestDatabase.repoRoot + "/docs/operations.md", encoding: .utf8)
        guard let start = text.range(of: "\n## Runbook\n") else {
            throw TestFailure(message: "docs/operations.md has no Runbook section")
        }
        let rest = text[start.upperBound...]
        let section = rest[..<(rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex)]
        return section.matches(of: /`([^`]+)`/).map { String($0.output.1).replacing(/\s*\n\s*/, with: " ") }
    }

    static let deliveryID = "11111111-1111-4111-8111-111111111111"
    static let excerpt = "upstream timed out, try later"

    @Test("every runbook command and query runs as written and shows what the runbook says it shows")
    func runbookRuns() async throws {
        let spans = try Self.runbookSpans()
        let commands = spans.filter { $0.hasPrefix("webhook-worker ") }
        let queries = spans.filter { $0.hasPrefix("SELECT ") }
        #expect(commands.count >= 8, "\(commands)")
        #expect(!queries.isEmpty)
        try await withTestDatabase(appTables: true) { database in
            try await database.script(
                """
                INSERT INTO "OAuthClient" (id, "clientId", name, "allowedScopes", "webhookUrl")
                VALUES ('client-a', 'pub-a', 'Alpha', 'integration', 'https://a.example/hook');
                INSERT INTO webhook_worker.webhook_deliveries
                    (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload, \
                status, attempts, last_http_status, last_error)
                VALUES ('\(Self.deliveryID)', 'integration.connected', 1, 'acct-1', 'user-1', 'client-a', '{}', \
                'failed', 8, 503, 'HTTP 503'),
                       ('22222222-2222-4222-8222-222222222222', 'integration.connected', 2, 'acct-2', 'user-1', \
                'client-a', '{}', 'failed', 1, NULL, 'endpoint disabled');
                INSERT INTO webhook_worker.delivery_attempts (delivery_id, attempt, url, http_status, duration_ms, \
                response_excerpt)
                VALUES ('\(Self.deliveryID)', 8, 'https://a.example/hook', 503, 12, '\(Self.excerpt)');
                -- One that died today, and one of the disabled endpoint's that died two days ago
                -- (left for the receiver's own retry after the day's retry --all).
                INSERT INTO webhook_worker.dead_letter_jobs (job_id, kind, payload, priority, attempts, \
                max_attempts, reason, last_error, created_at, dead_at)
                VALUES (101, 'webhook.deliver', '{"delivery_id": "\(Self.deliveryID)"}', 0, 8, 8, \
                'attempts_exhausted', 'HTTP 503', now(), now()),
                       (102, 'webhook.deliver', '{"delivery_id": "22222222-2222-4222-8222-222222222222"}', 0, 1, 8, \
                'endpoint_disabled', 'endpoint disabled', now() - interval '2 days', now() - interval '2 days');
                INSERT INTO webhook_worker.endpoints (key, state, consecutive_failures, disabled_at, disabled_by)
                VALUES ('client:client-a', 'disabled', 40, now(), 'automatic: failing for 5d');
                INSERT INTO webhook_worker.jobs (kind, payload, unique_key)
                VALUES ('integration.connected', '{"integration_account_id": "acct-3", "user_id": "user-1"}', \
                'integration.connected:acct-3');
                -- A delivery of another endpoint waiting for its slot (the "keys were repaired" step).
                INSERT INTO webhook_worker.jobs (kind, payload, concurrency_key)
                VALUES ('webhook.deliver', '{"delivery_id": "33333333-3333-4333-8333-333333333333"}', \
                'client:client-b');
                """)
            for command in commands {
                let line = command.replacingOccurrences(of: "<delivery_id>", with: Self.deliveryID)
                    .replacingOccurrences(of: "CLIENT", with: "pub-a")
                let arguments = line.split(separator: " ").dropFirst().map(String.init)
                // As a 120-column terminal shows it: what is cut there is not shown.
                let (output, status) = try await runWorker(
                    arguments, environment: ["DATABASE_URL": database.conninfo, "COLUMNS": "120"])
                #expect(status == 0, "\(line): \(output)")
                if line.hasPrefix("webhook-worker dead-letters list") {
                    #expect(output.contains(Self.deliveryID), "\(line) shows the delivery id: \(output)")
                }
                if line.hasPrefix("webhook-worker deliveries show") {
                    #expect(output.contains(Self.excerpt), "\(line) shows the receiver's answer: \(output)")
                }
                if line.hasPrefix("webhook-worker deliveries list") {
                    #expect(output.contains(Self.deliveryID), "\(line): \(output)")
                }
            }
            for query in queries {
                let rows = try await database.query(query).rows
                #expect(!rows.isEmpty, "\(query)")
            }
            // What the last steps were for: both dead letters are back in the queue.
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.dead_letter_jobs WHERE requeued_at IS NOT NULL") == 2)
            #expect(
                try await database.scalar(
                    "SELECT state FROM webhook_worker.endpoints WHERE key = 'client:client-a'", as: String.self)
                    == "closed")
        }
    }
}
