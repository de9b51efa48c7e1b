import Foundation
import LibPQ
@testable import TestSupport
import Testing

@testable import WebhookDelivery

/// The circuit breaker counts requests that fail together once (sql/webhook_delivery/030): a
/// failure counts towards the threshold only when its request was sent after the last counted
/// failure came back, so one stall is one failure whatever the endpoint's limit, and failures
/// one after the other still open the circuit after the threshold.
@Suite("Endpoint circuit: one stall, one failure", .timeLimit(.minutes(4)))
struct EndpointCircuitStallTests {
    static let threshold = 5

    /// Records a failure of a request that took `seconds`; returns the endpoint's state.
    @discardableResult
    static func fail(_ database: TestDatabase, _ key: String, took seconds: Int) async throws -> String {
        try await record(database, key, succeeded: false, took: seconds)
    }

    @discardableResult
    static func record(
        _ database: TestDatabase, _ key: String, succeeded: Bool, took seconds: Int
    ) async throws
        -> String
    {
        let error: String? = succeeded ? nil : "timed out"
        let row = try await database.query(
            EndpointCircuit.recordQuery.sql,
            [
                key, succeeded, error, threshold, PQInterval(.seconds(30)),
                PQInterval(.seconds(960)), PQInterval(.seconds(86_400)), PQInterval(.seconds(seconds)),
            ]
        ).first
        return try row?.decode("state", as: String.self) ?? "none"
    }

    static func counts(_ database: TestDatabase, _ key: String) async throws -> (counted: Int, failures: Int) {
        let row = try await database.query(
            "SELECT consecutive_failures, failures FROM webhook_worker.endpoints WHERE key = $1", [key]
        ).first
        let counted = try row?.decode("consecutive_failures", as: Int.self) ?? -1
        return (counted, try row?.decode("failures", as: Int.self) ?? -1)
    }

    @Test("a stall of more requests than the threshold counts once and leaves the circuit closed")
    func stallCountsOnce() async throws {
        try await withTestDatabase { database in
            // Eight requests sent a minute ago, all timing out now: before this rule, the fifth
            // opened the circuit of an endpoint whose limit had grown past the threshold.
            for _ in 0..<8 {
                #expect(try await Self.fail(database, "client:s", took: 60) == "closed")
            }
            let (counted, failures) = try await Self.counts(database, "client:s")
            #expect(counted == 1 && failures == 8)
        }
    }

    @Test("failures one after the other count each and open the circuit at the threshold")
    func serialFailuresOpen() async throws {
        try await withTestDatabase { database in
            // A stall first (one count), then requests sent after it, one at a time.
            for _ in 0..<4 { try await Self.fail(database, "client:f", took: 60) }
            for n in 2..<Self.threshold {
                #expect(try await Self.fail(database, "client:f", took: 0) == "closed", "failure \(n)")
            }
            #expect(try await Self.counts(database, "client:f").counted == Self.threshold - 1)
            #expect(try await Self.fail(database, "client:f", took: 0) == "open")
            // Old callers pass no duration: every failure counts, as before.
            for _ in 0..<Self.threshold {
                try await database.query(
                    """
                    SELECT webhook_worker.endpoint_record('client:old', false, 'boom', 5, interval '30 s',
                                                          interval '960 s', interval '1 day')
                    """)
            }
            let old = try await database.query("SELECT state FROM webhook_worker.endpoints WHERE key = 'client:old'")
            #expect(try old.first?.decode("state", as: String.self) == "open")
        }
    }

    @Test("a success forgets the counted failure, and a failed probe reopens whenever it was sent")
    func successAndProbe() async throws {
        try await withTestDatabase { database in
            for _ in 0..<3 { try await Self.fail(database, "client:p", took: 0) }
            #expect(try await Self.record(database, "client:p", succeeded: true, took: 0) == "closed")
            // A request sent before the success, failing after it: the first of a new run.
            try await Self.fail(database, "client:p", took: 60)
            #expect(try await Self.counts(database, "client:p").counted == 1)
            for _ in 0..<(Self.threshold - 1) { try await Self.fail(database, "client:p", took: 0) }
            try await database.query(
                """
                UPDATE webhook_worker.endpoints SET state = 'half_open', probe_started_at = now()
                WHERE key = 'client:p'
                """)
            // The probe's failure reopens the circuit even though a stall's count would skip it.
            #expect(try await Self.fail(database, "client:p", took: 60) == "open")
        }
    }
}
