import AsyncHTTPClient
import Foundation
import LibPQ
@testable import TestSupport
import Testing

/// The operator and DBA commands, run as the built binary against a real database.
@Suite("Operator commands", .timeLimit(.minutes(4)))
struct OperatorCommandTests {
    /// Runs `webhook-worker ARGUMENTS` (split at spaces: no argument here holds one); its standard
    /// output and exit status.
    static func cli(_ arguments: String, _ database: TestDatabase) async throws -> (output: String, status: Int32) {
        try await runWorker(
            arguments.split(separator: " ").map(String.init), environment: ["DATABASE_URL": database.conninfo],
            standardError: .discarded)
    }

    static func json(_ arguments: String, _ database: TestDatabase) async throws -> Any {
        let (output, status) = try await cli(arguments + " --json", database)
        #expect(status == 0, "\(arguments): \(output)")
        return try JSONSerialization.jsonObject(with: Data(output.utf8))
    }

    /// Two dead letters of different kinds (one 40 days old) with attempts, and two deliveries.
    static func seed(_ database: TestDatabase) async throws {
        try await database.script(
            """
            INSERT INTO webhook_worker.webhook_deliveries
                (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload, \
            status, attempts, last_http_status, last_error, created_at, updated_at)
            VALUES ('11111111-1111-4111-8111-111111111111', 'integration.connected', 1, 'acct-1', 'user-1', \
            'client-a', '{"a":1}', 'failed', 8, 500, 'HTTP 500', now(), now()),
                   ('22222222-2222-4222-8222-222222222222', 'integration.connected', 1, 'acct-1', 'user-1', \
            'client-b', '{"a":1}', 'delivered', 1, 200, NULL, now() - interval '40 days', now() - interval '40 days');
            INSERT INTO webhook_worker.delivery_attempts (delivery_id, attempt, url, http_status, duration_ms, \
            attempted_at)
            VALUES ('11111111-1111-4111-8111-111111111111', 1, 'https://a.example/hook', 500, 12, now()),
                   ('22222222-2222-4222-8222-222222222222', 1, 'https://b.example/hook', 200, 7, now() - interval \
            '40 days');
            INSERT INTO webhook_worker.dead_letter_jobs (job_id, kind, payload, priority, attempts, max_attempts, \
            reason, last_error, created_at, dead_at)
            VALUES (101, 'webhook.deliver', '{"delivery_id": "11111111-1111-4111-8111-111111111111"}', 0, 8, 8, \
            'attempts_exhausted', 'HTTP 500', now(), now()),
                   (102, 'integration.connected', '{"integration_account_id": "gone", "user_id": "u"}', 0, 1, 8, \
            'permanent_failure', 'integration account gone does not exist', now() - interval '40 days', \
            now() - interval '40 days');
            INSERT INTO webhook_worker.job_attempts (job_id, kind, attempt, worker_id, started_at, finished_at, \
            outcome, error)
            VALUES (101, 'webhook.deliver', 8, 'w1', now(), now(), 'failed', 'HTTP 500'),
                   (102, 'integration.connected', 1, 'w1', now() - interval '40 days', now() - interval '40 days', \
            'failed', 'gone');
            """)
    }

    @Test(
        "every --client takes the client's id, public clientId or key",
        arguments: ["client-a", "pub-a", "client:client-a", "client:pub-a"])
    func clientNames(name: String) async throws {
        try await withTestDatabase(appTables: true) { database in
            try await Self.seed(database)
            try await database.script(
                """
                INSERT INTO "OAuthClient" (id, "clientId", name) VALUES ('client-a', 'pub-a', 'Alpha'),
                    ('client-b', 'pub-b', 'Beta');
                INSERT INTO webhook_worker.webhook_deliveries
                    (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload)
                VALUES ('33333333-3333-4333-8333-333333333333', 'integration.connected', 2, 'acct-1', 'user-1', \
                'client-a', '{}');
                INSERT INTO webhook_worker.jobs (kind, payload)
                VALUES ('webhook.deliver', '{"delivery_id": "33333333-3333-4333-8333-333333333333"}');
                """)
            let listed = try #require(
                try await Self.json("deliveries list --client \(name)", database) as? [[String: Any]])
            #expect(Set(listed.compactMap { $0["oauth_client_id"] as? String }) == ["client-a"])
            #expect(listed.count == 2)

            let cancelled = try #require(
                try await Self.json("deliveries cancel --client \(name)", database) as? [String: Any])
            #expect(cancelled["cancelled"] as? Int == 1)

            let retried = try #require(
                try await Self.json("dead-letters retry --client \(name)", database) as? [String: Any])
            #expect(retried["requeued"] as? Int == 1)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.dead_letter_jobs WHERE requeued_at IS NOT NULL") == 1)

            try await database.script(
                "INSERT INTO webhook_worker.endpoints (key, state) VALUES ('client:client-a', 'open')")
            #expect(try await Self.cli("endpoints show \(name)", database).status == 0)
        }
    }

    @Test("--actor names who paused or disabled (WORKER_ACTOR, then USER); batch progress ends its line")
    func actorsAndProgress() async throws {
        try await withTestDatabase(appTables: true) { database in
            try await Self.seed(database)
            let environment = ["DATABASE_URL": database.conninfo]
            _ = try await runWorker(["jobs", "pause", "noop", "--actor", "alice"], environment: environment)
            _ = try await runWorker(
                ["endpoints", "disable", "client-b"], environment: environment.merging(["WORKER_ACTOR": "bob"]) { $1 })
            _ = try await runWorker(
                ["jobs", "pause", "webhook.deliver"], environment: environment.merging(["USER": "carol"]) { $1 })
            #expect(
                try await database.scalar("SELECT paused_by FROM webhook_worker.paused_kinds WHERE kind = 'noop'")
                    == "alice")
            #expect(
                try await database.scalar(
                    "SELECT paused_by FROM webhook_worker.paused_kinds WHERE kind = 'webhook.deliver'") == "carol")
            #expect(
                try await database.scalar(
                    "SELECT disabled_by FROM webhook_worker.endpoints WHERE key = 'client:client-b'")
                    == "operator (bob)")

            // Standard error's progress line ends before standard output's summary starts.
            let (output, status) = try await runWorker(
                ["dead-letters", "retry", "--all", "--batch-size", "1"], environment: environment)
            #expect(status == 0, "\(output)")
            #expect(output.hasSuffix("requeued 2 dead letter(s)\n"), "\(output)")
            #expect(output.contains("requeued 2 of 2\nrequeued 2 dead letter(s)"), "\(output)")
        }
    }

    @Test("dead-letters: list, show, retry one and all, purge; JSON parses; exit statuses")
    func deadLetters() async throws {
        try await withTestDatabase { database in
            try await Self.seed(database)
            let all = try #require(try await Self.json("dead-letters list", database) as? [[String: Any]])
            #expect(all.count == 2)
            let deliver = try #require(
                try await Self.json("dead-letters list --kind webhook.deliver", database) as? [[String: Any]])
            #expect(
                deliver.count == 1 && deliver[0]["delivery_id"] as? String == "11111111-1111-4111-8111-111111111111")
            #expect((try await Self.json("dead-letters list --since 1d", database) as? [[String: Any]])?.count == 1)
            let id = try #require(deliver[0]["id"] as? Int)

            let shown = try #require(try await Self.json("dead-letters show \(id)", database) as? [String: Any])
            #expect(shown["reason"] as? String == "attempts_exhausted")
            #expect((shown["attempts_history"] as? [[String: Any]])?.first?["error"] as? String == "HTTP 500")
            #expect(try await Self.cli("dead-letters show 999999", database).status == 1)
            #expect(try await Self.cli("dead-letters show", database).status == 2)
            #expect(try await Self.cli("dead-letters list --since yesterdayish", database).status == 2)
            #expect(try await Self.cli("dead-letters retry", database).status == 2)
            #expect(try await Self.cli("dead-letters retry 1 --all", database).status == 2)

            let (text, status) = try await Self.cli("dead-letters retry \(id)", database)
            #expect(status == 0 && text.contains("requeued dead letter \(id) as job"))
            #expect(
                try await database.count("SELECT count(*) FROM webhook_worker.jobs WHERE kind = 'webhook.deliver'") == 1
            )
            #expect(try await Self.cli("dead-letters retry \(id)", database).status == 1, "already requeued")
            #expect((try await Self.json("dead-letters list", database) as? [[String: Any]])?.count == 1)
            #expect(
                (try await Self.json("dead-letters list --include-requeued", database) as? [[String: Any]])?.count == 2)

            let retried = try #require(
                try await Self.json("dead-letters retry --all --kind integration.connected", database) as? [String: Any]
            )
            #expect(retried["requeued"] as? Int == 1)
            #expect(try await Self.cli("dead-letters retry --all", database).status == 1, "nothing left to requeue")

            let (purged, purgeStatus) = try await Self.cli("dead-letters purge --older-than 30d", database)
            #expect(purgeStatus == 0 && purged.contains("deleted 1 dead letter"))
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.dead_letter_jobs") == 1)
        }
    }

    @Test("retry --all works through many dead letters in batches")
    func retryAllInBatches() async throws {
        try await withTestDatabase { database in
            try await database.query(
                """
                INSERT INTO webhook_worker.dead_letter_jobs (job_id, kind, payload, priority, attempts, \
                max_attempts, reason, created_at)
                SELECT n, 'noop', '{}', 0, 8, 8, 'attempts_exhausted', now() FROM generate_series(1, 1234) n
                """)
            let result = try #require(
                try await Self.json("dead-letters retry --all --batch-size 100", database) as? [String: Any])
            #expect(result["requeued"] as? Int == 1234)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 1234)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.dead_letter_jobs WHERE requeued_at IS NULL") == 0)
        }
    }

    @Test("deliveries: list with filters, show with attempts, resend with the same id and bytes")
    func deliveries() async throws {
        // With the web app's tables, as in production: --client is looked up in "OAuthClient".
        try await withTestDatabase(appTables: true) { database in
            try await Self.seed(database)
            #expect((try await Self.json("deliveries list", database) as? [[String: Any]])?.count == 2)
            let failed = try #require(
                try await Self.json("deliveries list --status failed --client client-a", database) as? [[String: Any]])
            #expect(failed.count == 1 && failed[0]["last_http_status"] as? Int == 500)
            #expect(
                (try await Self.json("deliveries list --client nobody", database) as? [[String: Any]])?.isEmpty == true)
            #expect(try await Self.cli("deliveries list --status lost", database).status == 2)

            let shown = try #require(
                try await Self.json("deliveries show 11111111-1111-4111-8111-111111111111", database) as? [String: Any])
            #expect(shown["payload"] as? String == #"{"a":1}"#)
            #expect(
                (shown["attempt_history"] as? [[String: Any]])?.first?["url"] as? String == "https://a.example/hook")
            // Times print as PostgreSQL writes a timestamptz in JSON (UTC, microseconds, no trailing zeros).
            let createdAt = try await database.scalar(
                """
                SELECT to_json(created_at)::text FROM webhook_worker.webhook_deliveries WHERE delivery_id = \
                '11111111-1111-4111-8111-111111111111'
                """,
                as: String.self)
            #expect("\"\(shown["created_at"] as? String ?? "")\"" == createdAt)
            let attemptedAt = try await database.scalar(
                """
                SELECT to_json(attempted_at)::text FROM webhook_worker.delivery_attempts WHERE delivery_id = \
                '11111111-1111-4111-8111-111111111111'
                """,
                as: String.self)
            #expect(
                "\"\((shown["attempt_history"] as? [[String: Any]])?.first?["attempted_at"] as? String ?? "")\""
                    == attemptedAt)
            #expect(try await Self.cli("deliveries show 33333333-3333-4333-8333-333333333333", database).status == 1)
            #expect(try await Self.cli("deliveries show not-a-uuid", database).status == 2)

            let (text, status) = try await Self.cli("deliveries resend 11111111-1111-4111-8111-111111111111", database)
            #expect(status == 0, "\(text)")
            #expect(
                try await database.scalar(
                    "SELECT payload->>'delivery_id' FROM webhook_worker.jobs WHERE kind = 'webhook.deliver'",
                    as: String.self)
                    == "11111111-1111-4111-8111-111111111111")
            #expect(
                try await database.scalar(
                    """
                    SELECT status FROM webhook_worker.webhook_deliveries WHERE delivery_id = \
                    '11111111-1111-4111-8111-111111111111'
                    """,
                    as: String.self) == "pending")
            #expect(
                try await Self.cli("deliveries resend 11111111-1111-4111-8111-111111111111", database).status == 1,
                "already queued")
        }
    }

}
