import JobQueue
import LibPQ

/// One receiving endpoint's circuit breaker, kept in `webhook_worker.endpoints`.
///
/// An endpoint is one OAuth client (key `client:<id>`), not a URL or a host: two clients that
/// share a host keep separate budgets and separate circuits, so one's trouble never holds the
/// other's deliveries. The same key is the deliveries' `concurrency_key`, which bounds the
/// deliveries in flight to one endpoint across all replicas.
///
/// Closed, it sends. After `failureThreshold` failures in a row (timeouts, connection errors,
/// 5xx, 408, 429; requests in flight together that fail together count once) it opens:
/// deliveries wait (snoozed, no attempt spent) until the cool-down ends, which doubles with each
/// trip up to a cap. Then one delivery goes through as a probe
/// (half-open): an answer that is not a failure (a 2xx, or a 4xx other than 408 and 429) closes
/// the circuit and wakes the waiting deliveries in their order; a failure opens it again (see
/// `verdict`). An endpoint failing without a single success for `disableAfter` is disabled until an
/// operator enables it; its deliveries end in the dead letters as `endpoint_disabled`.
///
/// The transitions are SQL functions (`sql/`), so that replicas racing on one endpoint agree.
/// A healthy endpoint costs nothing: the state comes with the delivery's re-check, and a success
/// is written only when the endpoint had failures to forget.
enum EndpointCircuit {
    static let keyPrefix = "client:"
    static func key(client: String) -> String { keyPrefix + client }

    enum Permit: Equatable {
        case send
        /// Send; the result decides the circuit.
        case probe
        case wait(Duration)
        case disabled
    }

    static let permitQuery = PQQuery(
        "endpointPermit",
        """
        SELECT decision, extract(epoch FROM wait)::float8 AS wait FROM webhook_worker.endpoint_permit($1, \
        $2::interval)
        """
    )

    static func permit(
        key: String, configuration: WebhookDeliveryConfiguration, database: PQConnectionPool
    )
        async throws -> Permit
    {
        guard
            let row = try await database.query(permitQuery, [key, PQInterval(configuration.probeTimeout)]).first
        else { return .send }
        switch try row.decode("decision", as: String.self) {
        case "probe": return .probe
        case "disabled": return .disabled
        case "wait":
            let seconds = max(0.05, try row.decodeIfPresent("wait", as: Double.self) ?? 1)
            return .wait(.milliseconds(Int64(seconds * 1000)))
        default: return .send
        }
    }

    static let recordQuery = PQQuery(
        "endpointRecord",
        """
        SELECT webhook_worker.endpoint_record($1, $2, $3, $4, $5::interval, $6::interval, $7::interval, \
        $8::interval) AS state
        """)

    /// Records an attempt's result; returns the endpoint's new state. `duration` is how long the
    /// request took: a failure counts towards the threshold only when its request was sent after
    /// the last counted failure came back, so requests that fail together (one stall, however
    /// many were in flight) count once (sql/webhook_delivery/030).
    @discardableResult
    static func record(
        key: String, succeeded: Bool, error: String?, duration: Duration = .zero,
        configuration: WebhookDeliveryConfiguration, database: PQConnectionPool
    ) async throws -> String {
        let row = try await database.query(
            recordQuery,
            [
                key, succeeded, error.map { String($0.prefix(500)) }, configuration.failureThreshold,
                PQInterval(configuration.cooldown), PQInterval(configuration.maxCooldown),
                PQInterval(configuration.disableAfter), PQInterval(duration),
            ]
        ).first
        return try row?.decodeIfPresent("state", as: String.self) ?? "closed"
    }

    static let pauseQuery = PQQuery(
        "endpointPause", "SELECT webhook_worker.endpoint_pause($1, $2::interval) AS paused_until")

    /// Pauses the endpoint for `wait` (a 429 or 503 with `Retry-After`), or keeps a longer pause
    /// already recorded: every replica's re-check then holds its deliveries, unsent, until it ends.
    static func pause(key: String, for wait: Duration, database: PQConnectionPool) async throws {
        try await database.query(pauseQuery, [key, PQInterval(wait)])
    }

    /// Whether an attempt's result counts against the endpoint: the endpoint did not answer, or
    /// answered 5xx, `408 Request Timeout` or `429 Too Many Requests` (a timeout and back-pressure:
    /// the endpoint asks for less, which an open circuit gives it). Any other 4xx is the
    /// receiver's answer about this delivery and says nothing of its health; a URL the policy
    /// refuses is a configuration matter.
    static func countsAsFailure(_ result: SendResult) -> Bool {
        if let status = result.status { return status >= 500 || status == 408 || status == 429 }
        return result.errorClass?.isPermanent != true
    }

    /// What an attempt tells the circuit, to record with ``record(key:succeeded:error:configuration:database:)``.
    enum Verdict: Equatable {
        /// The endpoint is up: close the circuit, forget the failures.
        case healthy
        /// Count a failure (and open the circuit after enough, or at once after a probe).
        case failing
    }

    /// The verdict to record for an attempt's `result`, or nil when there is nothing to write.
    ///
    /// A failure (``countsAsFailure(_:)``) always counts. Any other answer, a 2xx or a 4xx, shows
    /// the endpoint up: the 4xx is the delivery's problem, which its own rules settle (retried, or
    /// failed at once for 410), so it closes an open circuit like a 2xx. A probe always gets a
    /// verdict, even when the policy refused its URL and nothing was sent: left half-open, the
    /// circuit would let one delivery through per probe timeout for ever; closed, deliveries to
    /// the refused URL fail at once by their own rule, and a real outage opens it again.
    /// Otherwise a healthy answer is written only when there are failures to forget, so a healthy
    /// endpoint costs no statement.
    static func verdict(
        for result: SendResult, probe: Bool, endpointState: String?, endpointFailures: Int
    ) -> Verdict? {
        if countsAsFailure(result) { return .failing }
        if probe { return .healthy }
        guard result.status != nil, let endpointState else { return nil }
        return endpointState != "closed" || endpointFailures > 0 ? .healthy : nil
    }
}

extension DeadLetterReason {
    /// The endpoint was disabled (automatically after failing for days, or by an operator).
    public static let endpointDisabled = DeadLetterReason("endpoint_disabled")
}
