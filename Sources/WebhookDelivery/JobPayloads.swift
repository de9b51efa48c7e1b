import Foundation
import JobQueue
import LibPQ

/// The payload of an `integration.connected` job: `{"integration_account_id", "user_id"}`.
public struct IntegrationConnectedPayload: Codable, Sendable, Equatable {
    /// The `"IntegrationAccount".id` that was connected.
    public var integrationAccountID: String
    /// The user who connected it.
    public var userID: String

    public init(integrationAccountID: String, userID: String) {
        self.integrationAccountID = integrationAccountID
        self.userID = userID
    }

    enum CodingKeys: String, CodingKey {
        case integrationAccountID = "integration_account_id"
        case userID = "user_id"
    }

    /// The job the web app inserts for this event.
    public var job: NewJob {
        get throws { try NewJob(kind: IntegrationConnectedHandler.kind, encoding: self) }
    }
}

/// The payload of a `webhook.deliver` job: `{"delivery_id"}`.
public struct DeliverPayload: Codable, Sendable, Equatable {
    /// The `webhook_deliveries` row to send.
    public var deliveryID: UUID

    public init(deliveryID: UUID) {
        self.deliveryID = deliveryID
    }

    enum CodingKeys: String, CodingKey {
        case deliveryID = "delivery_id"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        // As PostgreSQL writes a uuid (Foundation's own form is upper case).
        try container.encode(deliveryID.uuidString.lowercased(), forKey: .deliveryID)
    }

    /// The job that sends this delivery to OAuth client `clientID`: at most one queued per
    /// delivery, and counted against the client's endpoint limit.
    public func job(clientID: String) throws -> NewJob {
        try NewJob(
            kind: WebhookDeliverHandler.kind, encoding: self,
            uniqueKey: "\(WebhookDeliverHandler.kind):\(deliveryID.uuidString.lowercased())",
            concurrencyKey: EndpointCircuit.key(client: clientID))
    }
}
