import Foundation
import LibPQ

/// A claimed job, as a handler sees it.
public struct Job: Sendable {
    public let id: Int64
    public let kind: String
    /// The payload's JSON text as stored (`jsonb` normalizes spacing and key order).
    public let payload: PQJSON
    public let priority: Int
    /// This attempt's number, starting at 1.
    public let attempt: Int
    /// The attempts this job may use: its own `max_attempts`, or the retry policy's.
    public let maxAttempts: Int
    public let createdAt: Date
    public let runAt: Date
    /// Times the job was put back without spending an attempt because the database failed.
    public let released: Int
    /// Jobs of one kind sharing a key share that kind's per-key limit (``JobHandler/concurrencyLimit``).
    public let concurrencyKey: String?
    /// The `trace_context` column as stored (a W3C `traceparent`, maybe with a `tracestate`;
    /// not validated). Read only while tracing is on; nil otherwise.
    public internal(set) var traceContext: String?

    public init(
        id: Int64, kind: String, payload: PQJSON, priority: Int = 0, attempt: Int, maxAttempts: Int,
        createdAt: Date, runAt: Date, released: Int = 0, concurrencyKey: String? = nil
    ) {
        self.released = released
        self.concurrencyKey = concurrencyKey
        self.id = id
        self.kind = kind
        self.payload = payload
        self.priority = priority
        self.attempt = attempt
        self.maxAttempts = maxAttempts
        self.createdAt = createdAt
        self.runAt = runAt
    }

    /// True when a failure of this attempt sends the job to the dead letters.
    public var isLastAttempt: Bool { attempt >= maxAttempts }
}
