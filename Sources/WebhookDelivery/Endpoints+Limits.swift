import Foundation
import LibPQ

extension Endpoints {
    /// An endpoint's operator limits after a change.
    public struct Limits: Sendable, Equatable {
        public let key: String
        /// Nil: the adaptive limit applies.
        public let maxInFlight: Int?
        /// Requests per second; nil: none.
        public let rateLimit: Double?
        /// The limit the claim obeys now (the key's limit the queue was given, as
        /// `endpoint_apply_limit` chose it; nil: none of its own, the kind's).
        public let keyLimit: Int?
    }

    /// The endpoint key of an OAuth client that exists (by any name ``OAuthClientName`` accepts),
    /// or nil: limits are set only for clients there are, so that a mistyped name is an error.
    public func existingKey(for text: String) async throws -> String? {
        try await OAuthClientName(connection).existingID(for: text).map(EndpointCircuit.key(client:))
    }

    static let setLimits = PQQuery(
        "setEndpointLimits",
        """
        SELECT e.key, e.max_in_flight, e.rate_limit,
               coalesce(e.max_in_flight, (SELECT c.applied FROM webhook_worker.endpoint_concurrency c
                                          WHERE c.key = e.key)) AS key_limit
        FROM webhook_worker.endpoint_set_limits($1, $2, $3, $4, $5, $6) e
        """)

    /// Sets the endpoint's operator limits, each only when given (``EndpointLimits/Change/none``
    /// clears it), recording `actor`: a fixed `maxInFlight` overrides the adaptive limit at once;
    /// cleared, the adaptive limit applies again. Deliveries held by a rate limit that was raised
    /// or removed are woken. Run it in the transaction that records the change in the audit log.
    public func setLimits(
        key: String, maxInFlight: EndpointLimits.Change<Int>?, rateLimit: EndpointLimits.Change<Double>?,
        by actor: String
    ) async throws -> Limits {
        let row = try await connection.query(
            Self.setLimits,
            [key, maxInFlight != nil, maxInFlight?.value, rateLimit != nil, rateLimit?.value, actor]
        ).first
        guard let row else { throw PQError(code: .client, message: "setting endpoint limits returned no row") }
        return Limits(
            key: try row.decode("key"), maxInFlight: try row.decodeIfPresent("max_in_flight"),
            rateLimit: try row.decodeIfPresent("rate_limit"), keyLimit: try row.decodeIfPresent("key_limit"))
    }
}
