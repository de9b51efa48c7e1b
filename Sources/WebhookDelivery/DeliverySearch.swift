import Foundation
import LibPQ

/// A delivery as a search lists it: the delivery, who its OAuth client is, and why its last
/// attempt got no response, if it got none.
public struct DeliverySummary: Sendable, Equatable {
    public let delivery: Delivery
    /// The client's name and public `clientId`, while the client exists.
    public let clientName: String?
    public let clientPublicID: String?
    /// The last attempt's error class (`timeout`, `connect_failed`, ...), nil when it got a
    /// response or there was no attempt.
    public let lastErrorClass: String?
}

extension Deliveries {
    /// What a console searches deliveries by; nil fields match everything.
    public struct Search: Sendable, Equatable {
        /// The OAuth client: any name ``OAuthClientName`` accepts (its id, its public `clientId`, or
        /// `client:<id>`).
        public var client: String?
        public var user: String?
        public var status: Delivery.Status?
        public var deliveryID: UUID?
        public var event: String?
        public var integrationAccount: String?
        /// Created at or after this time.
        public var createdFrom: Date?
        /// Created before this time.
        public var createdUntil: Date?

        public init(
            client: String? = nil, user: String? = nil, status: Delivery.Status? = nil, deliveryID: UUID? = nil,
            event: String? = nil, integrationAccount: String? = nil, createdFrom: Date? = nil, createdUntil: Date? = nil
        ) {
            self.client = client
            self.user = user
            self.status = status
            self.deliveryID = deliveryID
            self.event = event
            self.integrationAccount = integrationAccount
            self.createdFrom = createdFrom
            self.createdUntil = createdUntil
        }
    }

    static let search = PQQuery(
        "searchDeliveries",
        """
        SELECT \(Delivery.columns), c.name AS client_name, c."clientId" AS client_public_id,
               (SELECT a.error_class FROM webhook_worker.delivery_attempts a
                WHERE a.delivery_id = d.delivery_id AND a.attempted_at >= d.created_at
                ORDER BY a.attempt DESC, a.id DESC LIMIT 1) AS last_error_class
        FROM webhook_worker.webhook_deliveries d LEFT JOIN "OAuthClient" c ON c.id = d.oauth_client_id
        WHERE ($1::text IS NULL OR d.oauth_client_id = $1)
          AND ($2::text IS NULL OR d.user_id = $2) AND ($3::text IS NULL OR d.status = $3)
          AND ($4::uuid IS NULL OR d.delivery_id = $4) AND ($5::text IS NULL OR d.event = $5)
          AND ($6::text IS NULL OR d.integration_account_id = $6)
          AND ($7::timestamptz IS NULL OR d.created_at >= $7) AND ($8::timestamptz IS NULL OR d.created_at < $8)
        ORDER BY d.created_at DESC, d.delivery_id LIMIT $9
        """)

    /// Deliveries matching `search`, newest first, without their payloads, each with its client's
    /// name and public id and its last error class. Reads the web app's `"OAuthClient"` table.
    public func search(_ search: Search, limit: Int = 100) async throws -> [DeliverySummary] {
        let bindings: [any PQEncodable] = [
            try await OAuthClientName(connection).id(for: search.client), search.user, search.status?.rawValue,
            search.deliveryID, search.event,
            search.integrationAccount, search.createdFrom, search.createdUntil, limit,
        ]
        return try await connection.query(Self.search, bindings).rows.map { row in
            DeliverySummary(
                delivery: try Delivery(row, withPayload: false), clientName: try row.decodeIfPresent("client_name"),
                clientPublicID: try row.decodeIfPresent("client_public_id"),
                lastErrorClass: try row.decodeIfPresent("last_error_class"))
        }
    }
}
