import AsyncHTTPClient
import Foundation
import LibPQ
@testable import TestSupport
import Testing

/// The operator commands that watch and steer a running deployment: stats, prune, /metrics and
/// /readyz, endpoints, cancelling deliveries, pausing kinds.
extension OperatorCommandTests {
    @Test("stats reports depth, replicas, throughput and dead letters; prune removes old rows in batches")
    func statsAndPrune() async throws {
        try await withTestDatabase { database in
            try await Self.seed(database)
            try await database.query("INSERT INTO webhook_worker.jobs (kind) SELECT 'noop' FROM generate_series(1, 3)")
            try await database.query(
                """
                UPDATE webhook_worker.jobs SET state = 'running', locked_by = 'replica-x', locked_until = now() + \
                interval '1 minute' WHERE id = (SELECT min(id) FROM webhook_worker.jobs)
                """
            )
            let stats = try #require(try await Self.json("stats", database) as? [String: Any])
            let queue = try #require(stats["queue"] as? [[String: Any]])
            #expect(queue.contains { $0["state"] as? String == "available" && $0["jobs"] as? Int == 2 })
            #expect((stats["replicas"] as? [[String: Any]])?.first?["worker_id"] as? String == "replica-x")
            #expect(
                (stats["throughput"] as? [[String: Any]])?.contains { $0["kind"] as? String == "webhook.deliver" }
                    == true)
            #expect((stats["dead_letters"] as? [[String: Any]])?.count == 2)
            let (table, status) = try await Self.cli("stats", database)
            #expect(status == 0 && table.contains("replica-x") && table.contains("queue depth"))

            try await database.query(
                """
                INSERT INTO webhook_worker.console_audit (at, actor, action, target, outcome) VALUES
                    (now() - interval '400 days', 'alice', 'kind.pause', 'kind:noop', 'ok'),
                    (now() - interval '40 days', 'alice', 'kind.resume', 'kind:noop', 'ok')
                """)
            let (pruned, pruneStatus) = try await Self.cli("prune --older-than 30d --batch-size 1", database)
            #expect(pruneStatus == 0, "\(pruned)")
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.job_attempts") == 1)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.delivery_attempts") == 1)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.webhook_deliveries") == 1)
            // The audit trail has a retention of its own: kept unless asked for.
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.console_audit") == 2)
            #expect(!pruned.contains("audit"), "\(pruned)")
            let (auditPruned, auditStatus) = try await Self.cli(
                "prune --older-than 30d --audit-older-than 365d --batch-size 1", database)
            #expect(auditStatus == 0 && auditPruned.contains("1 console audit entry"), "\(auditPruned)")
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.console_audit WHERE action = 'kind.resume'")
                    == 1)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.console_audit") == 1)
            #expect(try await Self.cli("prune --older-than 30d --audit-older-than soon", database).status == 2)
            #expect(try await Self.cli("prune", database).status == 2)
        }
    }

    @Test("/metrics counters move as jobs complete; /readyz turns unready without the database and ready again")
    func metricsAndReadiness() async throws {
        let directory = TestDatabase.repoRoot + "/.pg/ready-\(UUID().uuidString.prefix(8))"
        let server = try runScript("start", directory).trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? runScript("destroy", directory) }
        let database = try await TestDatabase.create(server: server)
        let port = try freeLoopbackPort()
        let worker = try startWorker(
            ["run", "--http-port", "\(port)", "--http-host", "127.0.0.1", "--poll-interval", "200ms"],
            environment: ["DATABASE_URL": database.conninfo])
        defer { worker.signal(SIGKILL) }

        func get(_ path: String) async -> (Int, String) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
            request.method = .GET
            guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(5)),
                let body = try? await response.body.collect(upTo: 1 << 22)
            else { return (0, "") }
            return (Int(response.status.code), String(buffer: body))
        }
        func counter(_ text: String, _ name: String) -> Double {
            text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap {
                Double($0.split(separator: " ").last!)
            } ?? 0
        }

        #expect(await eventually { await get("/readyz").0 == 200 })
        #expect(await get("/healthz") == (200, "ok\n"))
        try await database.query("INSERT INTO webhook_worker.jobs (kind) SELECT 'noop' FROM generate_series(1, 25)")
        let completed = #"webhook_worker_jobs_total{kind="noop",outcome="succeeded"}"#
        #expect(await eventually { counter(await get("/metrics").1, completed) == 25 })
        try await database.query("INSERT INTO webhook_worker.jobs (kind) SELECT 'noop' FROM generate_series(1, 5)")
        #expect(await eventually { counter(await get("/metrics").1, completed) == 30 })
        #expect(await get("/metrics").1.contains(#"webhook_worker_build_info{version=""#))
        let metrics = await get("/metrics").1
        #expect(metrics.contains("webhook_worker_listen_connected 1"))
        #expect(metrics.contains("webhook_worker_job_duration_seconds_bucket"))

        _ = try runScript("stop", directory)
        #expect(await eventually { await get("/readyz").0 == 503 })
        #expect(await get("/healthz").0 == 200, "alive even without the database")
        _ = try runScript("start", directory)
        #expect(await eventually(timeout: .seconds(60)) { await get("/readyz").0 == 200 })
        worker.signal(SIGTERM)
        #expect(await worker.wait(timeout: .seconds(60)) == 0, "\(worker.output)")
    }

    @Test("endpoints list/show/enable/disable, deliveries cancel by id and by client, jobs pause/resume, and stats")
    func endpointControls() async throws {
        try await withTestDatabase(appTables: true) { database in
            try await database.script(
                """
                INSERT INTO "OAuthClient" (id, "clientId", name, "allowedScopes", "webhookUrl", "isActive")
                VALUES ('client-a', 'pub-a', 'Alpha', 'integration', 'https://a.example/hook', true),
                       ('client-b', 'pub-b', 'Beta', 'integration', 'https://b.example/hook', true);
                INSERT INTO webhook_worker.endpoints (key, state, consecutive_failures, failing_since, last_error)
                VALUES ('client:client-a', 'open', 7, now() - interval '1 hour', 'HTTP 503');
                INSERT INTO webhook_worker.webhook_deliveries
                    (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload)
                VALUES ('33333333-3333-4333-8333-333333333333', 'integration.connected', 1, 'acct-1', 'user-1', \
                'client-a', '{}'),
                       ('44444444-4444-4444-8444-444444444444', 'integration.connected', 1, 'acct-1', 'user-1', \
                'client-b', '{}'),
                       ('55555555-5555-4555-8555-555555555555', 'integration.connected', 2, 'acct-1', 'user-1', \
                'client-b', '{}');
                INSERT INTO webhook_worker.jobs (kind, payload, concurrency_key)
                SELECT 'webhook.deliver', jsonb_build_object('delivery_id', delivery_id), 'client:' || oauth_client_id
                FROM webhook_worker.webhook_deliveries;
                """)
            let list = try #require(try await Self.json("endpoints list", database) as? [[String: Any]])
            #expect(list.count == 1)
            #expect(list.first?["state"] as? String == "open")
            #expect(list.first?["pending_deliveries"] as? Int == 1)
            // By public clientId as well as by id.
            let shown = try #require(try await Self.json("endpoints show pub-a", database) as? [String: Any])
            #expect(shown["consecutive_failures"] as? Int == 7)
            #expect(
                try await Self.cli("endpoints show client-b", database).status == 1, "never failed: nothing to show")

            #expect(try await Self.cli("endpoints disable client-b", database).status == 0)
            #expect(
                try await database.scalar(
                    "SELECT state FROM webhook_worker.endpoints WHERE key = 'client:client-b'", as: String.self)
                    == "disabled")
            #expect(try await Self.cli("endpoints enable client-a", database).status == 0)
            #expect(
                try await database.scalar(
                    "SELECT state FROM webhook_worker.endpoints WHERE key = 'client:client-a'", as: String.self)
                    == "closed")
            #expect(
                try await database.scalar(
                    "SELECT consecutive_failures FROM webhook_worker.endpoints WHERE key = 'client:client-a'",
                    as: Int.self) == 0)

            let stats = try #require(try await Self.json("stats", database) as? [String: Any])
            #expect(
                (stats["endpoints_not_closed"] as? [[String: Any]])?.first?["oauth_client_id"] as? String == "client-b")

            #expect(try await Self.cli("deliveries cancel 33333333-3333-4333-8333-333333333333", database).status == 0)
            #expect(
                try await Self.cli("deliveries cancel 33333333-3333-4333-8333-333333333333", database).status == 1,
                "not pending any more")
            let byClient = try #require(
                try await Self.json("deliveries cancel --client client-b", database) as? [String: Any])
            #expect(byClient["cancelled"] as? Int == 2)
            #expect(byClient["jobs_removed"] as? Int == 2)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'cancelled'") == 3)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 0, "nothing left pending")
            #expect(
                try await database.count("SELECT count(*) FROM webhook_worker.job_attempts WHERE outcome = 'cancelled'")
                    == 3)
            #expect(try await Self.cli("deliveries cancel", database).status == 2)

            #expect(try await Self.cli("jobs pause webhook.deliver", database).status == 0)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.paused_kinds WHERE kind = 'webhook.deliver'") == 1)
            #expect(try await Self.cli("jobs resume webhook.deliver", database).status == 0)
            #expect(try await Self.cli("jobs resume webhook.deliver", database).status == 1, "was not paused")
        }
    }
}
