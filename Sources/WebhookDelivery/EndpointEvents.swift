import Foundation
import LibPQ

/// The operational events of `webhook_worker.endpoint_events`: what the web app tells an OAuth
/// application's owner about its endpoint (its circuit opened or recovered, it was disabled or
/// enabled, a delivery failed). Triggers record them (migration 020) whoever changes the
/// endpoint or the delivery, and announce each on ``channel``; this type reads and prunes them.
public struct EndpointEvents: Sendable {
    public let connection: PQConnection

    /// The channel each new event is announced on, with `{"id", "event", "oauth_client_id"}`.
    public static let channel = "webhook_worker_endpoint_events"

    public init(_ connection: PQConnection) {
        self.connection = connection
    }

    /// What happened.
    public enum Kind: String, Sendable, CaseIterable {
        case circuitOpened = "circuit_opened"
        case circuitRecovered = "circuit_recovered"
        case endpointDisabled = "endpoint_disabled"
        case endpointEnabled = "endpoint_enabled"
        case deliveryFailed = "delivery_failed"
    }

    /// One recorded event.
    public struct Event: Sendable, Equatable {
        public let id: Int64
        public let oauthClientID: String
        /// The event's name as stored (a ``Kind``'s raw value).
        public let event: String
        public let reason: String?
        public let deliveryID: String?
        public let failingSince: Date?
        public let createdAt: Date

        public var kind: Kind? { Kind(rawValue: event) }
    }

    static let recent = PQQuery("recentEndpointEvents", EmbeddedSQL.recentEndpointEvents)

    /// The latest events, newest first: of `client` (an OAuth client's id) when given.
    public func recent(client: String? = nil, limit: Int = 50) async throws -> [Event] {
        try await connection.query(Self.recent, [client, limit]).rows.map { row in
            Event(
                id: try row.decode("id"), oauthClientID: try row.decode("oauth_client_id"),
                event: try row.decode("event"), reason: try row.decodeIfPresent("reason"),
                deliveryID: try row.decodeIfPresent("delivery_id"),
                failingSince: try row.decodeIfPresent("failing_since"), createdAt: try row.decode("created_at"))
        }
    }

    static let prune = PQQuery("pruneEndpointEvents", EmbeddedSQL.pruneEndpointEvents)

    /// Deletes events recorded before `cutoff`, in batches (`prune`, with the delivery history).
    /// - Returns: the events deleted.
    public func prune(
        before cutoff: Date, batchSize: Int = 5000, progress: (Int) -> Void = { _ in }
    ) async throws -> Int {
        try await connection.deleteInBatches(Self.prune, [cutoff], batchSize: batchSize, progress: progress)
    }
}
