import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookReceiver

/// The documented paths, as roles with exactly the documented grants (docs/enqueueing.md,
/// docs/database.md) take them: no test here runs as the schema's owner or a superuser except to
/// set up and to look.
@Suite("Least privilege", .timeLimit(.minutes(4)))
struct LeastPrivilegeTests {
    /// The SQLSTATE a statement as `role` fails with, or nil when it succeeds.
    static func failure(_ setup: LeastPrivilegeDatabase, as role: String, _ sql: String) async -> String? {
        do {
            try await setup.withConnection(as: role) { try await $0.execute(script: sql, name: "statement") }
            return nil
        } catch let error as PQError {
            return error.sqlState ?? "\(error)"
        } catch {
            return "\(error)"
        }
    }

    @Test("the web app's role enqueues every documented way: plain insert, enqueue(), unique_key, trace context")
    func webAppEnqueues() async throws {
        try await withLeastPrivilegeDatabase { setup in
            let webApp = setup.webApp
            // docs/enqueueing.md, "The insert", with its parameters.
            try await setup.query(
                as: webApp,
                """
                INSERT INTO webhook_worker.jobs (kind, payload)
                VALUES ('integration.connected',
                        jsonb_build_object('integration_account_id', $1::text, 'user_id', $2::text))
                """, ["acc_1", "usr_1"])
            let id = try await setup.query(
                as: webApp,
                """
                SELECT webhook_worker.enqueue('integration.connected',
                    '{"integration_account_id": "acc_123", "user_id": "usr_456"}'::jsonb) AS id
                """
            ).first?.decodeIfPresent("id", as: Int64.self)
            #expect(id != nil)
            try await setup.query(as: webApp, "SELECT webhook_worker.enqueue('noop', '{}', priority => 5)")
            // A keyed job writes the claim's bookkeeping, which the web app has no grant on.
            try await setup.query(as: webApp, "SELECT webhook_worker.enqueue('noop', concurrency_key => 'tenant-1')")

            // unique_key: a plain insert, the insert with ON CONFLICT, and enqueue() all skip a
            // key already queued, without an error.
            try await setup.query(as: webApp, "INSERT INTO webhook_worker.jobs (kind, unique_key) VALUES ('noop', 'k')")
            try await setup.query(as: webApp, "INSERT INTO webhook_worker.jobs (kind, unique_key) VALUES ('noop', 'k')")
            try await setup.query(
                as: webApp,
                """
                INSERT INTO webhook_worker.jobs (kind, unique_key) VALUES ('noop', 'k')
                ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
                """)
            let skipped = try await setup.query(
                as: webApp, "SELECT webhook_worker.enqueue('noop', unique_key => 'k') AS id"
            ).first?.decodeIfPresent("id", as: Int64.self)
            #expect(skipped == nil)

            // docs/enqueueing.md, "Traces".
            try await setup.query(
                as: webApp,
                """
                INSERT INTO webhook_worker.jobs (kind, payload, trace_context)
                VALUES ('integration.connected',
                        jsonb_build_object('integration_account_id', $1::text, 'user_id', $2::text), $3)
                """, ["acc_2", "usr_2", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"])

            #expect(try await setup.database.count("SELECT count(*) FROM webhook_worker.jobs") == 6)
            #expect(
                try await setup.database.count("SELECT count(*) FROM webhook_worker.jobs WHERE unique_key = 'k'") == 1)
            #expect(try await setup.database.count("SELECT count(*) FROM webhook_worker.concurrency_key_wakeups") == 1)
            #expect(
                try await setup.database.count("SELECT count(*) FROM webhook_worker.integration_connected_enqueued")
                    == 3)

            // And no more than that: the queue's payloads and bookkeeping stay out of its reach.
            #expect(await Self.failure(setup, as: webApp, "SELECT payload FROM webhook_worker.jobs") == "42501")
            #expect(
                await Self.failure(setup, as: webApp, "SELECT * FROM webhook_worker.concurrency_key_wakeups") == "42501"
            )
            #expect(
                await Self.failure(
                    setup, as: webApp,
                    "INSERT INTO webhook_worker.concurrency_key_wakeups (kind, concurrency_key) VALUES ('noop', 'x')")
                    == "42501")
            #expect(await Self.failure(setup, as: webApp, "SELECT * FROM webhook_worker.retired_secrets") == "42501")
            // The triggers' functions run as the owner, so nobody else may attach them to a table.
            #expect(
                await Self.failure(
                    setup, as: webApp,
                    """
                    CREATE TEMP TABLE t (id bigint, payload jsonb);
                    CREATE TRIGGER t AFTER INSERT ON t FOR EACH ROW
                    EXECUTE FUNCTION webhook_worker.run_inserted_hooks();
                    """) == "42501")
        }
    }

    @Test("the optional triggers, installed as documented, enqueue and keep the old secret for the web app's role")
    func optionalTriggers() async throws {
        try await withLeastPrivilegeDatabase { setup in
            try await setup.installOptionalTriggers()
            try await setup.query(
                as: setup.webApp,
                """
                INSERT INTO "User" (id) VALUES ('user-1');
                """)
            try await setup.query(
                as: setup.webApp,
                "INSERT INTO \"IntegrationDefinitionV2\" (id, name, slug, icon) VALUES ('def', 'Linear', 'linear', 'i')"
            )
            try await setup.query(
                as: setup.webApp,
                """
                INSERT INTO "IntegrationAccount" (id, "accountId", "integrationDefinitionId", "integratedById")
                VALUES ('acct-1', 'ext-1', 'def', 'user-1')
                """)
            let payload = try await setup.database.scalar(
                "SELECT payload::text FROM webhook_worker.jobs WHERE kind = 'integration.connected'", as: String.self)
            #expect(payload?.contains(#""integration_account_id": "acct-1""#) == true, "\(payload ?? "no job")")

            try await setup.query(
                as: setup.webApp,
                """
                INSERT INTO "OAuthClient" (id, "clientId", name, "webhookSecret") VALUES ('c1', 'pub-1', 'One', 'old')
                """)
            try await setup.query(
                as: setup.webApp, #"UPDATE "OAuthClient" SET "webhookSecret" = 'new' WHERE id = 'c1'"#)
            let kept = try await setup.database.scalar(
                "SELECT secret FROM webhook_worker.retired_secrets WHERE oauth_client_id = 'c1'", as: String.self)
            #expect(kept == "old")
        }
    }

    @Test("the worker's role, with exactly its documented grants, delivers, claims and completes")
    func workerRuns() async throws {
        try await withLeastPrivilegeDatabase { setup in
            let receiver = try await WebhookReceiverServer.start { _ in .ok }
            defer { Task { await receiver.stop() } }
            try await setup.installOptionalTriggers()
            try await setup.database.script(
                """
                INSERT INTO "User" (id) VALUES ('user-1');
                INSERT INTO "IntegrationDefinitionV2" (id, name, slug, icon) VALUES ('def', 'Linear', 'linear', 'i');
                INSERT INTO "OAuthClient" (id, "clientId", name, "allowedScopes", "webhookUrl", "webhookSecret")
                VALUES ('c1', 'pub-1', 'One', 'integration', 'http://127.0.0.1:\(receiver.port)/c1', 'old');
                INSERT INTO "OAuthIntegrationGrant" (id, "clientId", "userId") VALUES ('g1', 'c1', 'user-1');
                """)
            let worker = try startWorker(
                [
                    "run", "--allow-http", "--allow-private-networks", "--poll-interval", "200ms",
                    "--catch-up-interval", "500ms", "--log-level", "warning",
                ],
                environment: ["DATABASE_URL": setup.conninfo(as: setup.worker)])
            defer { worker.signal(SIGKILL) }

            // The web app's side, as the web app's role: the trigger's event, a secret rotated
            // (so the worker reads retired_secrets), and a job of another kind.
            try await setup.query(
                as: setup.webApp, #"UPDATE "OAuthClient" SET "webhookSecret" = 'new' WHERE id = 'c1'"#)
            try await setup.query(
                as: setup.webApp,
                """
                INSERT INTO "IntegrationAccount" (id, "accountId", "integrationDefinitionId", "integratedById")
                VALUES ('acct-1', 'ext-1', 'def', 'user-1')
                """)
            try await setup.query(as: setup.webApp, "SELECT webhook_worker.enqueue('noop')")

            #expect(await eventually { receiver.received.count == 1 }, "\(worker.output)")
            let signatures = receiver.received.first?.header("webhook-signature") ?? ""
            #expect(signatures.split(separator: " ").count == 2, "signed with the new and the retired secret")
            #expect(
                await eventually {
                    let succeeded = try? await setup.database.count(
                        "SELECT count(*) FROM webhook_worker.job_attempts WHERE outcome = 'succeeded'")
                    let left = try? await setup.database.count("SELECT count(*) FROM webhook_worker.jobs")
                    return succeeded == 3 && left == 0
                }, "\(worker.output)")
            #expect(
                try await setup.database.scalar(
                    "SELECT status FROM webhook_worker.webhook_deliveries", as: String.self) == "delivered")

            // Operator commands as the worker's role.
            let environment = ["DATABASE_URL": setup.conninfo(as: setup.worker)]
            for command in [["stats"], ["deliveries", "list"], ["dead-letters", "list"], ["endpoints", "list"]] {
                let (output, status) = try await runWorker(command, environment: environment)
                #expect(status == 0, "\(command): \(output)")
            }
            worker.signal(SIGTERM)
            #expect(await worker.wait(timeout: .seconds(60)) == 0, "\(worker.output)")
            #expect(!worker.output.contains("permission denied"), "\(worker.output)")
            #expect(!worker.output.contains("sweep failed"), "\(worker.output)")
            #expect(!worker.output.contains("could not keep the history partitions"), "\(worker.output)")

            // The history upkeep's functions, as the worker's role (they run as the owner's):
            // days created ahead of a later date, then the days before another dropped.
            try await setup.query(
                as: setup.worker,
                """
                SELECT count(*) FROM webhook_worker.create_history_partitions(
                    interval '1 day', interval '3 days', now() + interval '10 days')
                """)
            try await setup.query(
                as: setup.worker,
                "SELECT count(*) FROM webhook_worker.drop_history_partitions(now() + interval '5 days')")
            #expect(
                try await setup.database.count(
                    """
                    SELECT count(*) FILTER (WHERE to_at <= now() + interval '5 days')
                           + CASE WHEN max(to_at) < now() + interval '13 days' THEN 1 ELSE 0 END
                    FROM webhook_worker.history_partitions
                    """) == 0)
        }
    }
}

/// Every SQL block of the web app's and the DBAs' pages, run as the role that page is for.
@Suite("Docs' SQL", .timeLimit(.minutes(4)))
struct DocsSQLTests {
    /// The statements of every ```sql block in `file` that grants nothing (the grant blocks are
    /// run by ``LeastPrivilegeDatabase``), split at the semicolons that end a line.
    static func statements(in file: String) throws -> [String] {
        let text = try String(contentsOfFile: TestDatabase.repoRoot + "/" + file, encoding: .utf8)
        return text.matches(of: /```sql\n(.*?)```/.dotMatchesNewlines()).map { String($0.output.1) }
            .filter { !$0.contains("GRANT ") }
            .flatMap { $0.split(separator: /;[ \t]*(--[^\n]*)?\n/) }
            .map {
                $0.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }
                    .joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
            }
            .filter { !$0.isEmpty }
    }

    /// What a reader would put in place of the examples' parameters.
    static func bindings(for statement: String) -> [any PQEncodable] {
        let values = ["acc_docs", "usr_docs", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
        let used = statement.matches(of: /\$(\d)/).compactMap { Int($0.output.1) }.max() ?? 0
        return Array(values.prefix(used))
    }

    @Test("every SQL block of docs/enqueueing.md runs as the web app's role, with its documented grants")
    func enqueueingRunsAsWebApp() async throws {
        let statements = try Self.statements(in: "docs/enqueueing.md")
        #expect(statements.count >= 4, "\(statements)")
        try await withLeastPrivilegeDatabase { setup in
            for statement in statements {
                do {
                    try await setup.query(as: setup.webApp, statement, Self.bindings(for: statement))
                } catch {
                    Issue.record("\(statement)\n\(error)")
                }
            }
            // Every statement but those that read the operational events enqueues one job.
            let jobs = try await setup.database.count("SELECT count(*) FROM webhook_worker.jobs")
            #expect(jobs == statements.filter { !$0.contains("endpoint_events") }.count)
        }
    }

    @Test("every SQL block of docs/database.md runs as the worker's role, with its documented grants")
    func databaseRunsAsWorker() async throws {
        let statements = try Self.statements(in: "docs/database.md")
        #expect(statements.count >= 8, "\(statements)")
        try await withLeastPrivilegeDatabase { setup in
            // The examples' ids: dead letter 42 of job 123, and delivery 3f0c...
            try await setup.database.script(
                """
                INSERT INTO webhook_worker.dead_letter_jobs (id, job_id, kind, payload, priority, attempts, \
                max_attempts, reason, created_at) OVERRIDING SYSTEM VALUE
                VALUES (42, 123, 'noop', '{}', 0, 8, 8, 'attempts_exhausted', now());
                """)
            let delivery = "3f0c6a4e-5b1d-4c8e-9f2a-7d3b1e0c9a58"
            for statement in statements {
                let sql = statement.replacingOccurrences(of: "'3f0c...'", with: "'\(delivery)'")
                do {
                    try await setup.query(as: setup.worker, sql, Self.bindings(for: sql))
                } catch {
                    Issue.record("\(sql)\n\(error)")
                }
            }
            #expect(
                try await setup.database.count(
                    "SELECT count(*) FROM webhook_worker.dead_letter_jobs WHERE requeued_at IS NOT NULL") == 1)
        }
    }
}
