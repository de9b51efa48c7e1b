import Foundation
import LibPQ

/// A receiving endpoint's circuit and recent health, as operators see it. An endpoint has a row
/// once it failed or was disabled by hand; one that never failed is healthy and has none.
public struct EndpointHealth: Sendable, Equatable {
    /// `client:<OAuth client id>`.
    public let key: String
    public let oauthClientID: String
    /// The client's name and public `clientId`, while the client exists.
    public let clientName: String?
    public let clientPublicID: String?
    /// `closed`, `open`, `half_open` or `disabled`.
    public let state: String
    public let consecutiveFailures: Int
    public let failingSince: Date?
    /// Times the circuit opened since it was last closed.
    public let trips: Int
    public let nextProbeAt: Date?
    public let disabledAt: Date?
    public let disabledBy: String?
    public let lastError: String?
    public let lastFailureAt: Date?
    public let lastSuccessAt: Date?
    public let failures: Int64
    public let recoveries: Int64
    public let pendingDeliveries: Int
    /// Percent of its attempts in the last 24 hours that got a 2xx, to one decimal; nil without attempts.
    public let successRate24h: Double?

    static let select = """
        SELECT e.key, substr(e.key, 8) AS oauth_client_id, c.name AS client_name, c."clientId" AS client_public_id,
               e.state, e.consecutive_failures, e.failing_since, e.trips, e.next_probe_at, e.disabled_at, e.disabled_by,
               e.last_error, e.last_failure_at, e.last_success_at, e.failures, e.recoveries,
               (SELECT count(*) FROM webhook_worker.webhook_deliveries d
                WHERE d.oauth_client_id = substr(e.key, 8) AND d.status = 'pending') AS pending_deliveries,
               (SELECT round(100.0 * count(*) FILTER (WHERE a.http_status BETWEEN 200 AND 299) / nullif(count(*), 0), 1)
                FROM webhook_worker.delivery_attempts a JOIN webhook_worker.webhook_deliveries d USING (delivery_id)
                WHERE d.oauth_client_id = substr(e.key, 8) AND a.attempted_at > now() - interval '24 hours') AS \
        success_rate_24h
        FROM webhook_worker.endpoints e
        LEFT JOIN "OAuthClient" c ON 'client:' || c.id = e.key
        """

    init(_ row: PostgresRow) throws {
        key = try row.decode("key")
        oauthClientID = try row.decode("oauth_client_id")
        clientName = try row.decodeIfPresent("client_name")
        clientPublicID = try row.decodeIfPresent("client_public_id")
        state = try row.decode("state")
        consecutiveFailures = try row.decode("consecutive_failures")
        failingSince = try row.decodeIfPresent("failing_since")
        trips = try row.decode("trips")
        nextProbeAt = try row.decodeIfPresent("next_probe_at")
        disabledAt = try row.decodeIfPresent("disabled_at")
        disabledBy = try row.decodeIfPresent("disabled_by")
        lastError = try row.decodeIfPresent("last_error")
        lastFailureAt = try row.decodeIfPresent("last_failure_at")
        lastSuccessAt = try row.decodeIfPresent("last_success_at")
        failures = try row.decode("failures")
        recoveries = try row.decode("recoveries")
        pendingDeliveries = try row.decode("pending_deliveries")
        successRate24h = try row.decodeIfPresent("success_rate_24h")
    }
}

/// The receiving endpoints' operations: list, show, enable and disable, for operators and consoles.
public struct Endpoints: Sendable {
    public let connection: PostgresConnection

    public init(_ connection: PostgresConnection) {
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

    static let list = PostgresQuery(
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

    static let get = PostgresQuery("showEndpoint", "\(EndpointHealth.select) WHERE e.key = $1")

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

    static let notClosed = PostgresQuery(
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

    static let setEnabled = PostgresQuery(
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
