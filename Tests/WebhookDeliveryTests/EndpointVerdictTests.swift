import Testing

@testable import WebhookDelivery

/// What an attempt's result tells an endpoint's circuit: pure, no database.
@Suite("Endpoint circuit verdicts")
struct EndpointVerdictTests {
    static func answered(_ status: Int) -> SendResult {
        SendResult(status: status, errorClass: nil, error: "HTTP \(status)", duration: .zero)
    }

    static func unanswered(_ errorClass: DeliveryErrorClass) -> SendResult {
        SendResult(status: nil, errorClass: errorClass, error: "\(errorClass)", duration: .zero)
    }

    @Test(
        "a probe always ends half-open: failures (no answer, 5xx, 408, 429) open it, any other answer closes it",
        arguments: [
            (answered(200), EndpointCircuit.Verdict.healthy), (answered(404), .healthy), (answered(410), .healthy),
            (answered(400), .healthy), (answered(301), .healthy), (answered(408), .failing), (answered(429), .failing),
            (answered(500), .failing), (answered(503), .failing), (unanswered(.timeout), .failing),
            (unanswered(.connectFailed), .failing), (unanswered(.policyRefused), .healthy),
            (unanswered(.invalidURL), .healthy),
        ])
    func probe(result: SendResult, verdict: EndpointCircuit.Verdict) {
        #expect(
            EndpointCircuit.verdict(for: result, probe: true, endpointState: "half_open", endpointFailures: 3)
                == verdict)
    }

    @Test("outside a probe, an answer is written only when there are failures to forget; failures always count")
    func notProbing() {
        func verdict(_ result: SendResult, _ state: String?, _ failures: Int) -> EndpointCircuit.Verdict? {
            EndpointCircuit.verdict(for: result, probe: false, endpointState: state, endpointFailures: failures)
        }
        // A healthy endpoint (no row, or closed without failures) costs no statement.
        #expect(verdict(Self.answered(200), nil, 0) == nil)
        #expect(verdict(Self.answered(404), "closed", 0) == nil)
        // Failures to forget: a 2xx or a 4xx shows the endpoint up.
        #expect(verdict(Self.answered(200), "closed", 2) == .healthy)
        #expect(verdict(Self.answered(404), "closed", 2) == .healthy)
        #expect(verdict(Self.answered(429), "closed", 2) == .failing)
        #expect(verdict(Self.answered(502), nil, 0) == .failing)
        #expect(verdict(Self.unanswered(.timeout), nil, 0) == .failing)
        // A refused URL never reached the endpoint: nothing to say about it.
        #expect(verdict(Self.unanswered(.policyRefused), "closed", 2) == nil)
    }
}
