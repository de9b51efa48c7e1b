import Foundation
import JobQueue
import LibPQ
import Logging
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookWorkerSchema
@testable import webhook_worker

@Suite("Settings and schedules", .timeLimit(.minutes(4)))
struct SettingsTests {
    @Test("durations parse in every unit and reject junk")
    func durations() {
        #expect(DurationText.parse("250ms") == .milliseconds(250))
        #expect(DurationText.parse("5s") == .seconds(5))
        #expect(DurationText.parse("5m") == .seconds(300))
        #expect(DurationText.parse("2h") == .seconds(7200))
        #expect(DurationText.parse("1d") == .seconds(86_400))
        #expect(DurationText.parse("1.5s") == .milliseconds(1500))
        for junk in ["", "5", "s", "-5s", "5x", "5 s s", "1e3s", "ms", "∞s"] {
            #expect(DurationText.parse(junk) == nil, "\(junk) must not parse")
        }
        #expect(DurationText.format(.seconds(300)) == "5m")
        #expect(DurationText.format(.milliseconds(1500)) == "1500ms")
    }

    @Test("the default schedule gives 8 attempts and jitter stays within ±20 %")
    func scheduleStrategy() throws {
        let strategy = try #require(DurationText.schedule("5s,5m,30m,2h,5h,10h,10h"))
        #expect(strategy == .standard)
        #expect(strategy.maxAttempts == 8)
        #expect(strategy.longestDelay == .seconds(36_000))
        #expect(strategy.description == "5s,5m,30m,2h,5h,10h,10h")
        for attempt in 1...7 {
            let base = strategy.schedule[attempt - 1].totalSeconds
            for _ in 0..<200 {
                let delay = strategy.delay(afterAttempt: attempt).totalSeconds
                #expect(delay >= base * 0.8 - 0.001 && delay <= base * 1.2 + 0.001)
            }
        }
        #expect(strategy.clamp(.seconds(999_999)) == .seconds(36_000))
        #expect(strategy.clamp(.seconds(-5)) == .zero)
        #expect(DurationText.schedule("5s,,5m") == nil)
        #expect(DurationText.schedule("soon") == nil)
    }

    @Test("exponential jitter doubles up to its cap; none gives one attempt")
    func otherStrategies() {
        let exponential: any RetryStrategy = .exponentialJitter(
            maxAttempts: 10, initialDelay: .seconds(1), maxDelay: .seconds(60), jitter: 0)
        #expect(
            (1...9).map { exponential.delay(afterAttempt: $0) }
                == [1, 2, 4, 8, 16, 32, 60, 60, 60].map(Duration.seconds))
        #expect(exponential.delay(afterAttempt: 500) == .seconds(60))
        #expect(exponential.maxAttempts == 10 && exponential.clamp(.seconds(3600)) == .seconds(60))
        let jittered = ExponentialJitterRetryStrategy(
            maxAttempts: 3, initialDelay: .seconds(10), maxDelay: .seconds(100))
        for _ in 0..<200 {
            let delay = jittered.delay(afterAttempt: 2).totalSeconds
            #expect(delay >= 16 - 0.001 && delay <= 24 + 0.001)
        }
        let none: any RetryStrategy = .none
        #expect(none.maxAttempts == 1 && none.clamp(.seconds(5)) == .zero)
    }
}
