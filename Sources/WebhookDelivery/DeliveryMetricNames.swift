import JobQueue

/// The names of the metrics the webhook worker exports besides JobQueue's own (which JobQueue
/// names after ``JobQueueSchema/metricPrefix``): the deliveries', the endpoints' and the catch-up's
/// here, and the gauges that `run` samples or sets (queue depth, endpoints by state, the build).
/// The one place these names are written; deploy/'s alert rules and dashboard use them, and
/// `scripts/check-deploy` checks that they do (it reads the suffixes below).
public struct DeliveryMetricNames: Sendable {
    /// Counter `{outcome, status_class}`: every delivery attempt, and each delivery cancelled before one.
    public let deliveryAttempts: String
    /// Timer: the duration of each HTTP attempt.
    public let deliveryDuration: String
    /// Counter `{to}`: an endpoint's circuit changing state.
    public let endpointTransitions: String
    /// Counter: an endpoint paused by a 429 or 503 with `Retry-After`.
    public let endpointPauses: String
    /// Counter `{outcome}`: operational events POSTed to the web app (`posted`, or `failed` and
    /// tried again later).
    public let operationalPosts: String
    /// Counter: a delivery held, unsent, because its endpoint's rate limit had no token.
    public let endpointRateLimited: String
    /// Counter: `integration.connected` events enqueued late by the catch-up.
    public let integrationEventsCaughtUp: String
    /// Gauge `{endpoint}`: 0 closed, 1 half-open, 2 open, 3 disabled, for each endpoint not closed.
    public let endpointCircuitState: String
    /// Gauge `{endpoint}`: failures in a row, for each endpoint not closed.
    public let endpointConsecutiveFailures: String
    /// Gauge `{endpoint}`: the limit on deliveries in flight the claim holds the endpoint to now
    /// (adaptive, the operator's, or the kind's), for the busiest endpoints (at most 50).
    public let endpointLimit: String
    /// Gauge `{endpoint}`: deliveries running now across replicas, for the busiest endpoints.
    public let endpointInFlight: String
    /// Gauge `{endpoint}`: deliveries due and waiting for a slot, for the busiest endpoints.
    public let endpointWaiting: String
    /// Gauge `{endpoint}`: seconds of pause the endpoint asked for in all (`Retry-After`), from
    /// the database (monotonic: `rate()` gives the share of time paused), for the busiest endpoints.
    public let endpointThrottledSeconds: String
    /// Gauge `{endpoint}`: 1 while the endpoint is paused by its `Retry-After`, for the busiest endpoints.
    public let endpointPaused: String
    /// Gauge `{state}`: endpoints by circuit state.
    public let endpoints: String
    /// Gauge `{kind, state}`: the whole queue's jobs (every replica exports the same value).
    public let queueDepth: String
    /// Gauge `{kind}`: the age of the oldest job waiting.
    public let queueOldestAge: String
    /// Gauge `{version}`: 1, labelled with this replica's version.
    public let buildInfo: String

    public init(prefix: String) {
        deliveryAttempts = prefix + "_delivery_attempts_total"
        deliveryDuration = prefix + "_delivery_duration_seconds"
        endpointTransitions = prefix + "_endpoint_transitions_total"
        endpointPauses = prefix + "_endpoint_pauses_total"
        operationalPosts = prefix + "_operational_posts_total"
        endpointRateLimited = prefix + "_endpoint_rate_limited_total"
        integrationEventsCaughtUp = prefix + "_integration_events_caught_up_total"
        endpointCircuitState = prefix + "_endpoint_circuit_state"
        endpointConsecutiveFailures = prefix + "_endpoint_consecutive_failures"
        endpointLimit = prefix + "_endpoint_limit"
        endpointInFlight = prefix + "_endpoint_in_flight"
        endpointWaiting = prefix + "_endpoint_waiting"
        endpointThrottledSeconds = prefix + "_endpoint_throttled_seconds"
        endpointPaused = prefix + "_endpoint_paused"
        endpoints = prefix + "_endpoints"
        queueDepth = prefix + "_queue_depth"
        queueOldestAge = prefix + "_queue_oldest_age_seconds"
        buildInfo = prefix + "_build_info"
    }

    /// Under the worker's prefix, `webhook_worker` (``WebhookDeliverySchema/queue``'s).
    public static let worker = DeliveryMetricNames(prefix: WebhookDeliverySchema.queue.metricPrefix)
}
