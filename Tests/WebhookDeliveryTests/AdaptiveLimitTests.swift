import Testing

@testable import WebhookDelivery

/// The adaptive limit's rule (AIMD with a latency guard): pure, no database.
@Suite("Adaptive endpoint limit")
struct AdaptiveLimitTests {
    let settings = AdaptiveLimit.Settings()

    @Test("a new endpoint starts at 4; fast 2xx answers raise it by one each, up to the ceiling")
    func growsToCeiling() {
        var limit = AdaptiveLimit(settings: settings)
        #expect(limit.current(settings) == 4)
        for _ in 0..<28 { limit.record(.answered(milliseconds: 200), settings) }
        #expect(limit.current(settings) == 32)
        for _ in 0..<100 { limit.record(.answered(milliseconds: 200), settings) }
        #expect(limit.current(settings) == 64, "never above the ceiling")
        #expect(abs((limit.latency ?? 0) - 200) < 0.001)
    }

    @Test("each round of overload halves the limit, down to the floor: a hanging endpoint is at 1 after six")
    func cutToFloor() {
        var limit = AdaptiveLimit(value: 64, latency: 5)
        var trace: [Int] = []
        for _ in 0..<6 {
            limit.record(.overloaded, settings)
            trace.append(limit.current(settings))
        }
        #expect(trace == [32, 16, 8, 4, 2, 1])
        limit.record(.overloaded, settings)
        #expect(limit.current(settings) == 1, "never below the floor")
    }

    @Test("requests sent together that time out together cut the limit once; the next round cuts again")
    func oneCutPerWindow() {
        // Four slots stall on slow answers sent at 0.0 to 0.15 s; their 1 s timeouts end together.
        let settings = AdaptiveLimit.Settings(initial: 4, ceiling: 4)
        var limit = AdaptiveLimit(settings: settings)
        for (sent, ended) in [(0.0, 1.0), (0.05, 1.05), (0.1, 1.1), (0.15, 1.15)] {
            limit.record(.overloaded, settings, sentAt: sent, at: ended)
        }
        #expect(limit.current(settings) == 2, "one stall is one overload, not four")
        #expect(limit.cutAt == 1.0)
        // A request sent after that cut and failing is a new round: cut again, to the floor.
        limit.record(.overloaded, settings, sentAt: 1.2, at: 2.2)
        #expect(limit.current(settings) == 1)
        #expect(limit.cutAt == 2.2)
        // A 2xx still raises it whenever it was sent.
        limit.record(.answered(milliseconds: 5), settings, sentAt: 0.5, at: 2.3)
        #expect(limit.current(settings) == 2)
        // Without times, every overload cuts (each request sent after every earlier cut).
        var untimed = AdaptiveLimit(value: 4, latency: nil, cutAt: 1.0)
        untimed.record(.overloaded, settings)
        untimed.record(.overloaded, settings)
        #expect(untimed.current(settings) == 1)
    }

    @Test("a 2xx much slower than usual holds the limit; a 4xx about one delivery changes nothing")
    func slowAndNeutral() {
        var limit = AdaptiveLimit(value: 10, latency: 100)
        limit.record(.answered(milliseconds: 250), settings)
        #expect(limit.value == 10, "2.5 times the usual latency: held")
        limit.record(.answered(milliseconds: 190), settings)
        #expect(limit.value == 11)
        limit.record(.neutral, settings)
        #expect(limit.value == 11)
        // Under the slow floor, an answer is never slow, however fast the endpoint usually is.
        var fast = AdaptiveLimit(value: 10, latency: 2)
        fast.record(.answered(milliseconds: 40), settings)
        #expect(fast.value == 11)
    }

    @Test(
        "an endpoint that slows from 5 ms to 2 s is cut to the floor by its timeouts, and grows again once it recovers")
    func slowsAndRecovers() {
        var limit = AdaptiveLimit(settings: settings)
        for _ in 0..<60 { limit.record(.answered(milliseconds: 5), settings) }
        #expect(limit.current(settings) == 64)
        for _ in 0..<7 { limit.record(.overloaded, settings) }
        #expect(limit.current(settings) == 1)
        for _ in 0..<10 { limit.record(.answered(milliseconds: 5), settings) }
        #expect(limit.current(settings) == 11)
    }

    @Test("attempt results map to signals as the circuit reads them")
    func signals() {
        func result(_ status: Int?, _ errorClass: DeliveryErrorClass? = nil) -> SendResult {
            SendResult(status: status, errorClass: errorClass, error: nil, duration: .milliseconds(120))
        }
        #expect(AdaptiveLimit.Signal(result(204)) == .answered(milliseconds: 120))
        for status in [500, 503, 408, 429] { #expect(AdaptiveLimit.Signal(result(status)) == .overloaded) }
        #expect(AdaptiveLimit.Signal(result(nil, .timeout)) == .overloaded)
        #expect(AdaptiveLimit.Signal(result(nil, .connectFailed)) == .overloaded)
        for status in [400, 404, 410] { #expect(AdaptiveLimit.Signal(result(status)) == .neutral) }
        #expect(AdaptiveLimit.Signal(result(nil, .policyRefused)) == .neutral)
    }

    @Test("settings are kept sane: a floor of at least 1, a start between floor and ceiling")
    func settingsBounds() {
        let odd = AdaptiveLimit.Settings(floor: 0, initial: 100, ceiling: 8)
        #expect(odd.floor == 1 && odd.initial == 8 && odd.ceiling == 8)
        #expect(AdaptiveLimit(settings: odd).current(odd) == 8)
    }
}
