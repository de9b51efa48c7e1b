import Foundation
import LibPQ

/// An endpoint's operator limits (`webhook_worker.endpoints.max_in_flight` and `rate_limit`):
/// what an operator may set, read from text as `endpoints set` and the console take it.
///
/// `max_in_flight` is a fixed limit on the endpoint's deliveries in flight across all replicas;
/// while it is set it overrides the adaptive limit (at once, and after every adaptation), and
/// clearing it returns the endpoint to the adaptive limit. `rate_limit` is in requests per
/// second: a token bucket in the database (burst `max(1, rate_limit)`) that every request takes
/// a token from before it is sent (``EndpointRateLimit``).
public enum EndpointLimits {
    public static let maxInFlightRange = 1...10_000
    /// Requests per second: above 0, at most this.
    public static let maxRateLimit = 100_000.0

    /// One limit's change: a new value, or none (cleared).
    public enum Change<Value: Sendable & Equatable>: Sendable, Equatable {
        case set(Value)
        case none

        public var value: Value? {
            if case .set(let value) = self { return value }
            return nil
        }

        /// How an operator writes it: the value, or `none`.
        public func text(_ format: (Value) -> String) -> String { value.map(format) ?? "none" }
    }

    /// A limit an operator wrote that cannot be one; `description` says what is accepted.
    public struct InvalidLimit: Error, CustomStringConvertible, Equatable {
        /// `max in flight` or `rate limit`.
        public let limit: String
        public let text: String
        /// What is accepted.
        public let expected: String

        public var description: String { "\(limit) '\(text)': \(expected)" }
    }

    /// `N` (a whole number from 1 to 10000) or `none`.
    public static func parseMaxInFlight(_ text: String) throws(InvalidLimit) -> Change<Int> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.lowercased() == "none" { return .none }
        guard let value = Int(trimmed), maxInFlightRange.contains(value) else {
            throw InvalidLimit(
                limit: "max in flight", text: text,
                expected: """
                    expected a whole number from 1 to 10000, or none (to stop sending to an endpoint, disable it)
                    """)
        }
        return .set(value)
    }

    /// `R` requests per second (above 0, at most 100000; decimals allowed, e.g. 0.5) or `none`.
    public static func parseRateLimit(_ text: String) throws(InvalidLimit) -> Change<Double> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.lowercased() == "none" { return .none }
        let isNumber = !trimmed.isEmpty && trimmed.allSatisfy { $0.isASCII && ($0.isNumber || $0 == ".") }
        guard isNumber, let value = Double(trimmed), value > 0, value <= maxRateLimit else {
            throw InvalidLimit(
                limit: "rate limit", text: text,
                expected: "expected requests per second above 0 and at most 100000 (e.g. 20 or 0.5), or none")
        }
        return .set(value)
    }

    /// A rate as an operator reads it: `20`, `0.5`.
    public static func format(rate: Double) -> String {
        rate == rate.rounded() && rate < 1e15 ? String(Int64(rate)) : String(rate)
    }
}

/// The rate limit's token bucket (`webhook_worker.endpoint_take_token`, sql/webhook_delivery/034).
enum EndpointRateLimit {
    static let takeQuery = PQQuery(
        "endpointTakeToken", "SELECT webhook_worker.endpoint_take_token($1) AS wait")

    /// Takes a token for one request to the endpoint: nil when it may send now, otherwise how
    /// long the delivery should wait, unsent. Only for endpoints with a rate limit: the others
    /// never run this statement.
    static func take(key: String, database: PQConnectionPool) async throws -> Duration? {
        let wait = try await database.query(takeQuery, [key]).first?.decodeIfPresent("wait", as: Double.self)
        guard let wait, wait > 0 else { return nil }
        return .milliseconds(Int64((wait * 1000).rounded(.up)) + 1)
    }
}
