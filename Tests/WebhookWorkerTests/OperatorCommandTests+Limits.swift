import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery

/// `endpoints set`: the operator's limits from the command line, shown by list and show, audited.
extension OperatorCommandTests {
    @Test("endpoints set --max-in-flight/--rate-limit: applied at once, shown by list and show, audited, cleared")
    func endpointsSet() async throws {
        try await withTestDatabase(appTables: true) { database in
            try await database.script(
                """
                INSERT INTO "OAuthClient" (id, "clientId", name, "allowedScopes", "webhookUrl", "isActive")
                VALUES ('client-a', 'pub-a', 'Alpha', 'integration', 'https://a.example/hook', true);
                """)
            let set = try await runWorker(
                ["endpoints", "set", "pub-a", "--max-in-flight", "2", "--rate-limit", "20", "--actor", "ada"],
                environment: ["DATABASE_URL": database.conninfo], standardError: .discarded)
            #expect(set.status == 0, "\(set.output)")
            #expect(set.output.contains("endpoint client:client-a: max in flight 2, rate limit 20/s"))
            #expect(
                try await database.scalar(
                    """
                    SELECT max_running FROM webhook_worker.concurrency_key_limits
                    WHERE kind = 'webhook.deliver' AND concurrency_key = 'client:client-a'
                    """, as: Int.self) == 2)

            let shown = try #require(try await Self.json("endpoints show client-a", database) as? [String: Any])
            #expect(shown["max_in_flight"] as? Int == 2 && shown["rate_limit"] as? Double == 20)
            #expect(shown["limits_set_by"] as? String == "operator (ada)")
            let text = try await Self.cli("endpoints show client-a", database)
            #expect(text.output.contains("max_in_flight") && text.output.contains("rate_limit"))
            let list = try #require(try await Self.json("endpoints list", database) as? [[String: Any]])
            #expect(list.count == 1 && list.first?["max_in_flight"] as? Int == 2)

            // One option alone changes only its own limit.
            #expect(try await Self.cli("endpoints set client-a --rate-limit 0.5", database).status == 0)
            var row = try #require(
                try await database.query(
                    "SELECT max_in_flight, rate_limit FROM webhook_worker.endpoints WHERE key = 'client:client-a'"
                ).first)
            #expect(try row.decodeIfPresent("max_in_flight", as: Int.self) == 2)
            #expect(try row.decodeIfPresent("rate_limit", as: Double.self) == 0.5)
            #expect(
                try await Self.cli("endpoints set client-a --max-in-flight none --rate-limit none", database).status
                    == 0)
            row = try #require(
                try await database.query(
                    "SELECT max_in_flight, rate_limit FROM webhook_worker.endpoints WHERE key = 'client:client-a'"
                ).first)
            #expect(try row.decodeIfPresent("max_in_flight", as: Int.self) == nil)
            #expect(try row.decodeIfPresent("rate_limit", as: Double.self) == nil)

            let audit = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(audit.count == 3 && audit.allSatisfy { $0.action == "endpoint.set_limits" })
            let firstEntry = try #require(audit.last)
            #expect(firstEntry.actor == "operator (ada)" && firstEntry.target == "endpoint:client:client-a")
            #expect(
                firstEntry.detail.contains("\"via\": \"cli\"") && firstEntry.detail.contains("\"max_in_flight\": \"2\"")
            )
            #expect(audit.first?.detail.contains("\"rate_limit\": \"none\"") == true)
        }
    }

    @Test(
        "endpoints set refuses what is not a limit, with exit status 2, a line saying what is accepted, and no change",
        arguments: [
            (["--max-in-flight", "0"], "--max-in-flight '0': expected a whole number from 1 to 10000"),
            (["--max-in-flight", "many"], "--max-in-flight 'many': expected a whole number"),
            (["--rate-limit=-5"], "--rate-limit '-5': expected requests per second above 0"),
            (["--rate-limit", "nan"], "--rate-limit 'nan': expected requests per second"),
            ([], "nothing to set: give --max-in-flight, --rate-limit or --ordering"),
        ])
    func endpointsSetRefuses(arguments: [String], message: String) async throws {
        try await withTestDatabase(appTables: true) { database in
            try await database.script(
                """
                INSERT INTO "OAuthClient" (id, "clientId", name) VALUES ('client-a', 'pub-a', 'Alpha');
                """)
            let (output, status) = try await runWorker(
                ["endpoints", "set", "client-a"] + arguments, environment: ["DATABASE_URL": database.conninfo])
            #expect(status == 2, "\(output)")
            #expect(output.contains(message), "\(output)")
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.endpoints") == 0)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.console_audit") == 0)
        }
    }

    @Test("endpoints set on an unknown client fails with exit status 1 and changes nothing")
    func endpointsSetUnknown() async throws {
        try await withTestDatabase(appTables: true) { database in
            let (output, status) = try await runWorker(
                ["endpoints", "set", "nobody", "--max-in-flight", "2"], environment: ["DATABASE_URL": database.conninfo]
            )
            #expect(status == 1, "\(output)")
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.endpoints") == 0)
        }
    }
}
