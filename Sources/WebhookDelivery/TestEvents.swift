import Foundation
import JobQueue
import LibPQ

/// `webhook.test` events: a sample webhook an operator sends to one endpoint now, so that its
/// owner can check their receiver. It is a delivery like any other (a `webhook_deliveries` row
/// with event `webhook.test` and its `webhook.deliver` job), so it goes the normal way: the
/// network policy, the endpoint's circuit and limit, the same headers and signatures, attempts
/// recorded, retries. Only the recipient check differs: a test event is about no user, so it
/// needs the client to exist, be active and have a webhook URL, not the user's grant nor the
/// `integration` scope.
public struct TestEvents: Sendable {
    public static let event = "webhook.test"
    public let connection: PQConnection

    public init(_ connection: PQConnection) {
        self.connection = connection
    }

    /// The sample body: `{"event":"webhook.test","delivery_id":...,"oauth_client_id":...,
    /// "message":...,"timestamp":...}`, keys in that order (see docs/receiving-webhooks.md).
    static func body(deliveryID: UUID, clientID: String, requestedAt: Date) -> String {
        var json = JSONText()
        json.beginObject()
        json.field("event", event)
        json.field("delivery_id", deliveryID.lowercasedText)
        json.field("oauth_client_id", clientID)
        json.field(
            "message", "A test event sent by an operator to check this endpoint. It is about no user or integration.")
        json.field("timestamp", IntegrationConnectedEvent.timestamp(requestedAt))
        json.endObject()
        return json.text
    }

    /// Why a test event cannot be sent to a client.
    public struct Refusal: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// The client's id and whether it can receive: it exists, is active and has a webhook URL.
    static let client = PQQuery(
        "testEventClient",
        """
        SELECT c.id, c."isActive" AS active, coalesce(\(Recipients.trimmedURL), '') <> '' AS has_url
        FROM "OAuthClient" c WHERE c.id = $1
        """)

    /// The delivery; `source_job_id` is its own job's, `integration_account_id` and `user_id` are
    /// empty: a test event comes from no job of the web app's and is about no account.
    static let insert = PQQuery(
        "createTestDelivery",
        """
        INSERT INTO webhook_worker.webhook_deliveries
            (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload)
        VALUES ($1, 'webhook.test', $2, '', '', $3, $4)
        """)

    /// What ``send(clientID:)`` queued.
    public struct Sent: Sendable, Equatable {
        public let deliveryID: UUID
        public let jobID: Int64
    }

    /// Creates a `webhook.test` delivery to OAuth client `clientID` ("OAuthClient".id) and
    /// enqueues its job, in one transaction; a worker sends it as soon as the endpoint allows.
    /// - Throws: ``Refusal`` when the client does not exist, is inactive or has no webhook URL.
    public func send(clientID: String, now: Date = Date()) async throws -> Sent {
        guard let row = try await connection.query(Self.client, [clientID]).first else {
            throw Refusal(description: "OAuth client \(clientID) does not exist")
        }
        guard try row.decode("active", as: Bool.self) else {
            throw Refusal(description: "OAuth client \(clientID) is inactive")
        }
        guard try row.decode("has_url", as: Bool.self) else {
            throw Refusal(description: "OAuth client \(clientID) has no webhook URL")
        }
        let deliveryID = UUID()
        let payload = DeliverPayload(deliveryID: deliveryID)
        return try await connection.transaction { connection in
            guard
                let job = try await JobEnqueuer(connection, schema: WebhookDeliverySchema.queue).enqueue(
                    try payload.job(clientID: clientID))
            else { throw Refusal(description: "a job for delivery \(deliveryID) is queued already") }
            _ = try await connection.query(
                Self.insert,
                [deliveryID, job, clientID, Self.body(deliveryID: deliveryID, clientID: clientID, requestedAt: now)])
            return Sent(deliveryID: deliveryID, jobID: job)
        }
    }
}
