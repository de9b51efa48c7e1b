import Foundation
import LibPQ

/// The receiving endpoints' operations: list, show, enable and disable, for operators and consoles.
public struct Endpoints: Sendable {
    public let connection: PQConnection

    public init(_ connection: PQConnection) {
        self.connection = connection
    }

    /// The endpoint key (`client:<id>`) for what an operator typed: any of the names
    /// ``OAuthClientName`` accepts.
    public func key(for text: String) async throws -> String {
        EndpointCircuit.key(client: try await OAuthClientName(connection).id(for: text))
    }

    public enum State: String, Sendable, CaseIterable {
        case closed, open, halfOpen = "half_open", disabled
    }

    static let list = PQQuery(
        "listEndpoints",
        """
        \(EndpointHealth.select)
        WHERE ($1::text IS NULL OR e.state = $1)
        ORDER BY CASE e.state WHEN 'disabled' THEN 0 WHEN 'open' THEN 1 WHEN 'half_open' THEN 2 ELSE 3 END,
                 e.consecutive_failures DESC, e.key
        """)

    /// Endpoints that failed or were disabled (in `state`, when given), worst first.
    public func list(state: State? = nil) async throws -> [EndpointHealth] {
        try await connection.query(Self.list, [state?.rawValue]).rows.map(EndpointHealth.init)
    }

    static let get = PQQuery("showEndpoint", "\(EndpointHealth.select) WHERE e.key = $1")

    /// The endpoint with key `key`, or nil when it never failed and was never disabled (healthy).
    public func get(key: String) async throws -> EndpointHealth? {
        try await connection.query(Self.get, [key]).rows.first.map(EndpointHealth.init)
    }

    /// An endpoint that is not sending normally, for an overview.
    public struct NotClosed: Sendable, Equatable {
        public let oauthClientID: String
        public let state: String
        public let consecutiveFailures: Int
        public let nextProbeAt: Date?
        public let lastError: String?
    }

    static let notClosed = PQQuery(
        "statsEndpoints",
        """
        SELECT substr(key, 8) AS oauth_client_id, state, consecutive_failures, next_probe_at, last_error
        FROM webhook_worker.endpoints WHERE state <> 'closed'
        ORDER BY CASE state WHEN 'disabled' THEN 0 WHEN 'open' THEN 1 ELSE 2 END, key
        """)

    /// Endpoints open, half open or disabled: disabled first, then open.
    public func notClosed() async throws -> [NotClosed] {
        try await connection.query(Self.notClosed).rows.map { row in
            NotClosed(
                oauthClientID: try row.decode("oauth_client_id"), state: try row.decode("state"),
                consecutiveFailures: try row.decode("consecutive_failures"),
                nextProbeAt: try row.decodeIfPresent("next_probe_at"), lastError: try row.decodeIfPresent("last_error"))
        }
    }

    static let setEnabled = PQQuery(
        "setEndpointEnabled", "SELECT (webhook_worker.set_endpoint_enabled($1, $2, $3)).state AS state")

    /// Enables the endpoint (closes its circuit, forgets its failures, sends its waiting
    /// deliveries now) or disables it (nothing is sent; its waiting and new deliveries end as
    /// `endpoint_disabled`), recording `actor`.
    /// - Returns: its state afterwards.
    @discardableResult
    public func setEnabled(key: String, _ enabled: Bool, by actor: String) async throws -> String? {
        try await connection.query(Self.setEnabled, [key, enabled, actor]).first?.decodeIfPresent("state")
    }
}
