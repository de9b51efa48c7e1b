import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery

/// `endpoints set --ordering`: the built binary makes an endpoint FIFO and back, audited;
/// `endpoints show` and `list` print the ordering; bad input is refused and changes nothing.
extension OperatorCommandTests {
    @Test("endpoints set --ordering fifo|none changes the ordering, is audited, and show and list print it")
    func endpointsSetOrdering() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database)
            try await fixture.addClient("alpha")
            await fixture.receiver.stop()
            let ordered = "SELECT count(*) FROM webhook_worker.concurrency_key_limits WHERE ordered"

            let refused = try await Self.cli("endpoints set alpha --ordering lifo", database)
            #expect(refused.status == 64 || refused.status == 2, "\(refused.output)")
            #expect(try await Self.cli("endpoints set alpha", database).status != 0, "nothing to set")
            #expect(try await database.count(ordered) == 0)
            // A healthy endpoint has no row: show says it is healthy.
            #expect(try await Self.cli("endpoints show alpha", database).status == 1)

            let set = try await Self.cli("endpoints set alpha-public --ordering FIFO --actor ada", database)
            #expect(set.status == 0 && set.output.contains("ordering none -> fifo"), "\(set.output)")
            #expect(try await database.count(ordered) == 1)
            let shown = try #require(try await Self.json("endpoints show alpha", database) as? [String: Any])
            #expect(shown["ordering"] as? String == "fifo" && shown["state"] as? String == "closed")

            // Once it has a circuit row, list shows it too.
            try await database.query(
                "INSERT INTO webhook_worker.endpoints (key, state, consecutive_failures) "
                    + "VALUES ('client:alpha', 'closed', 1)")
            let listed = try #require(try await Self.json("endpoints list", database) as? [[String: Any]])
            #expect(listed.first?["ordering"] as? String == "fifo")

            let unset = try await Self.cli("endpoints set client:alpha --ordering none --actor ada", database)
            #expect(unset.status == 0 && unset.output.contains("ordering fifo -> none"), "\(unset.output)")
            #expect(try await database.count(ordered) == 0)
            let shownAgain = try #require(try await Self.json("endpoints show alpha", database) as? [String: Any])
            #expect(shownAgain["ordering"] as? String == "none")

            let audited = try await database.query(
                """
                SELECT actor, action, target, detail->>'ordering' AS ordering, detail->>'via' AS via
                FROM webhook_worker.console_audit ORDER BY id
                """)
            #expect(audited.rows.count == 2)
            let first = try #require(audited.rows.first)
            #expect(try first.decode("actor", as: String.self) == "operator (ada)")
            #expect(try first.decode("action", as: String.self) == "endpoint.set")
            #expect(try first.decode("target", as: String.self) == "endpoint:client:alpha")
            #expect(try first.decode("ordering", as: String.self) == "fifo")
            #expect(try first.decode("via", as: String.self) == "cli")
        }
    }
}
