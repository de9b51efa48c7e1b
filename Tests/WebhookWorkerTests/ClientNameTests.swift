import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery

/// One resolver names an OAuth client everywhere (docs/operations.md, "Commands"): the commands
/// (OperatorCommandTests.clientNames) and the console's delivery search share it.
@Suite("OAuth client names", .timeLimit(.minutes(4)))
struct ClientNameTests {
    @Test("id, public clientId and client:<id> resolve alike; an id wins over an equal clientId; unknown is an id")
    func resolver() async throws {
        try await withTestDatabase(appTables: true) { database in
            try await database.script(
                """
                INSERT INTO "OAuthClient" (id, "clientId", name) VALUES ('client-a', 'pub-a', 'Alpha'),
                    ('client-b', 'client-a', 'Beta, whose public clientId is Alpha''s id');
                INSERT INTO webhook_worker.webhook_deliveries
                    (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload)
                VALUES (gen_random_uuid(), 'integration.connected', 1, 'acct-1', 'user-1', 'client-a', '{}'),
                       (gen_random_uuid(), 'integration.connected', 1, 'acct-1', 'user-1', 'client-b', '{}');
                """)
            try await database.withConnection { connection in
                let names = OAuthClientName(connection)
                for name in ["client-a", "pub-a", "client:client-a", "client:pub-a"] {
                    #expect(try await names.id(for: name) == "client-a", "\(name)")
                    let found = try await Deliveries(connection).search(.init(client: name))
                    #expect(found.map(\.delivery.oauthClientID) == ["client-a"], "\(name)")
                }
                #expect(try await names.id(for: "gone") == "gone")
                #expect(try await names.existingID(for: "gone") == nil)
                #expect(try await names.id(for: nil) == nil)
            }
        }
    }
}
