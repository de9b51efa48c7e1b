import Foundation
import LibPQ

/// A job to put in the queue: its kind and payload, and what a plain `INSERT` leaves to the
/// table's defaults.
public struct NewJob: Sendable, Equatable {
    /// Which handler runs it, e.g. `noop`.
    public var kind: String
    /// The payload's JSON text.
    public var payload: PQJSON
    /// When it may run first; nil for now.
    public var runAt: Date?
    /// Lower runs first.
    public var priority: Int
    /// Its own limit on attempts; nil follows the retry strategy of the worker that runs it.
    public var maxAttempts: Int?
    /// While a job with this key is in the queue, another insert with the same key is skipped.
    public var uniqueKey: String?
    /// Jobs of one kind sharing a key share that kind's per-key limit (``JobHandler/concurrencyLimit``).
    public var concurrencyKey: String?
    /// The W3C `traceparent` (optionally followed by a space and a `tracestate`) of the trace the
    /// job's spans continue; stored as given, in `trace_context` (the worker ignores a malformed
    /// one).
    public var traceContext: String?

    public init(
        kind: String, payload: PQJSON = PQJSON("{}"), runAt: Date? = nil, priority: Int = 0,
        maxAttempts: Int? = nil, uniqueKey: String? = nil, concurrencyKey: String? = nil, traceContext: String? = nil
    ) {
        self.kind = kind
        self.payload = payload
        self.runAt = runAt
        self.priority = priority
        self.maxAttempts = maxAttempts
        self.uniqueKey = uniqueKey
        self.concurrencyKey = concurrencyKey
        self.traceContext = traceContext
    }

    /// A job whose payload is `payload` encoded as JSON (keys sorted, so equal payloads are equal
    /// bytes).
    public init<Payload: Encodable>(
        kind: String, encoding payload: Payload, runAt: Date? = nil, priority: Int = 0, maxAttempts: Int? = nil,
        uniqueKey: String? = nil, concurrencyKey: String? = nil, traceContext: String? = nil
    ) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        self.init(
            kind: kind, payload: PQJSON(bytes: Array(try encoder.encode(payload))), runAt: runAt,
            priority: priority,
            maxAttempts: maxAttempts, uniqueKey: uniqueKey, concurrencyKey: concurrencyKey, traceContext: traceContext)
    }
}
