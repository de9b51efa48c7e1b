import ArgumentParser
import Foundation
import LibPQ
import WebhookDelivery

extension EndpointsCommand {
    /// `endpoints events`: the operational events the web app reads (endpoint_events).
    struct Events: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List operational events, newest first: circuits, disables, failed deliveries.",
            discussion: """
                These are the events the web app reads to tell an OAuth application's owner about its \
                endpoint (LISTEN webhook_worker_endpoint_events, or poll webhook_worker.endpoint_events; \
                see docs/enqueueing.md). prune deletes them with the delivery history.
                """)
        @Argument(help: "Only this endpoint: OAuth client id, public clientId, or key.") var endpoint: String?
        @Option(help: "At most this many events.") var limit = 50
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard limit > 0 else { throw ValidationError("--limit must be positive") }
        }

        func run() async throws {
            let events = try await withOperatorConnection(database) { connection in
                var client: String?
                if let endpoint {
                    client = String(try await Endpoints(connection).key(for: endpoint).dropFirst("client:".count))
                }
                return try await EndpointEvents(connection).recent(client: client, limit: limit)
            }
            Output(json: json).list(
                events.map(\.fields),
                columns: ["id", "created_at", "oauth_client_id", "event", "reason", "delivery_id", "failing_since"])
        }
    }
}

extension EndpointEvents.Event {
    var fields: Fields {
        [
            "id": id, "created_at": createdAt, "oauth_client_id": oauthClientID, "event": event, "reason": reason,
            "delivery_id": deliveryID, "failing_since": failingSince,
        ]
    }
}
