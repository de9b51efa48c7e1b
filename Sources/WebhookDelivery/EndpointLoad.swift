import Foundation
import LibPQ

/// What the claim holds a receiving endpoint to now, across all replicas: its concurrency limit,
/// its deliveries in flight and waiting (the queue's `concurrency_key_status`), and the time it
/// has asked to be left alone with `Retry-After` (its row in `endpoints`).
public struct EndpointLoad: Sendable, Equatable {
    /// The endpoint's own limit on deliveries in flight: the adaptive one, or the operator's
    /// `max_in_flight`. Nil: it has none yet and runs under the kind's, the worker's
    /// `--endpoint-concurrency` (4), where every endpoint starts.
    public var limit: Int?
    /// Deliveries running now.
    public var inFlight: Int
    /// Deliveries due and waiting for a slot (retries and snoozes not yet due are not counted).
    public var waiting: Int
    /// Seconds of pause the endpoint has asked for in all (429 or 503 with `Retry-After`;
    /// overlapping pauses counted once).
    public var throttledSeconds: Double
    /// While paused: when the pause ends.
    public var pausedUntil: Date?

    public init(
        limit: Int? = nil, inFlight: Int = 0, waiting: Int = 0, throttledSeconds: Double = 0, pausedUntil: Date? = nil
    ) {
        self.limit = limit
        self.inFlight = inFlight
        self.waiting = waiting
        self.throttledSeconds = throttledSeconds
        self.pausedUntil = pausedUntil
    }

    /// The select list that ``init(_:)`` reads, over `s` (a `concurrency_key_status` row, or
    /// NULLs) and `e` (an `endpoints` row, or NULLs).
    package static let columns = """
        s.max_running AS load_limit, coalesce(s.running, 0) AS load_in_flight, coalesce(s.waiting, 0) AS load_waiting,
               coalesce(e.throttled_seconds, 0)::float8 AS load_throttled_seconds,
               CASE WHEN e.paused_until > now() THEN e.paused_until END AS load_paused_until
        """

    package init(_ row: PQRow) throws {
        limit = try row.decodeIfPresent("load_limit")
        inFlight = try row.decode("load_in_flight")
        waiting = try row.decode("load_waiting")
        throttledSeconds = try row.decode("load_throttled_seconds")
        pausedUntil = try row.decodeIfPresent("load_paused_until")
    }
}
