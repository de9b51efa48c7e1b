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
    /// `fifo` or `none` (``EndpointOrdering``).
    public let ordering: String
    /// The operator's fixed limit on deliveries in flight (nil: adaptive) and rate limit in
    /// requests per second (nil: none), with who set them last (``EndpointLimits``).
    public let maxInFlight: Int?
    public let rateLimit: Double?
    public let limitsSetBy: String?
    /// What the claim holds the endpoint to now, across replicas.
    public let load: EndpointLoad

    static let select = """
        SELECT e.key, substr(e.key, 8) AS oauth_client_id, c.name AS client_name, c."clientId" AS client_public_id,
               e.state, e.consecutive_failures, e.failing_since, e.trips, e.next_probe_at, e.disabled_at, e.disabled_by,
               e.last_error, e.last_failure_at, e.last_success_at, e.failures, e.recoveries,
               e.max_in_flight, e.rate_limit, e.limits_set_by,
               (SELECT count(*) FROM webhook_worker.webhook_deliveries d
                WHERE d.oauth_client_id = substr(e.key, 8) AND d.status = 'pending') AS pending_deliveries,
               (SELECT round(100.0 * count(*) FILTER (WHERE a.http_status BETWEEN 200 AND 299) / nullif(count(*), 0), 1)
                FROM webhook_worker.delivery_attempts a JOIN webhook_worker.webhook_deliveries d USING (delivery_id)
                WHERE d.oauth_client_id = substr(e.key, 8) AND a.attempted_at > now() - interval '24 hours') AS \
        success_rate_24h,
               CASE WHEN s.ordered THEN 'fifo' ELSE 'none' END AS ordering,
               \(EndpointLoad.columns)
        FROM webhook_worker.endpoints e
        LEFT JOIN "OAuthClient" c ON 'client:' || c.id = e.key
        LEFT JOIN webhook_worker.concurrency_key_status s
               ON s.kind = 'webhook.deliver' AND s.concurrency_key = e.key
        """

    init(_ row: PQRow) throws {
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
        ordering = try row.decode("ordering")
        maxInFlight = try row.decodeIfPresent("max_in_flight")
        rateLimit = try row.decodeIfPresent("rate_limit")
        limitsSetBy = try row.decodeIfPresent("limits_set_by")
        load = try EndpointLoad(row)
    }
}
