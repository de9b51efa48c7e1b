import Foundation
import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing
import WebhookReceiver

@testable import WebhookDelivery

/// The operator's limits per endpoint (sql/webhook_delivery/034): a fixed max in flight that wins
/// over the adaptive limit, and a rate limit held by a token bucket in the database.
@Suite("Endpoint operator limits", .timeLimit(.minutes(4)))
struct EndpointOperatorLimitTests {
    /// The queue's limit for the key, and the adaptive limit's whole value.
    static func limits(_ database: TestDatabase, _ key: String) async throws -> (queue: Int?, adaptive: Int?) {
        let row = try await database.query(
            """
            SELECT (SELECT max_running FROM webhook_worker.concurrency_key_limits
                    WHERE kind = 'webhook.deliver' AND concurrency_key = $1) AS queue,
                   (SELECT applied FROM webhook_worker.endpoint_concurrency WHERE key = $1) AS adaptive
            """, [key]
        ).first
        return (try row?.decodeIfPresent("queue"), try row?.decodeIfPresent("adaptive"))
    }

    static func setLimits(
        _ database: TestDatabase, _ key: String, max: EndpointLimits.Change<Int>? = nil,
        rate: EndpointLimits.Change<Double>? = nil
    ) async throws -> Endpoints.Limits {
        try await database.withConnection {
            try await Endpoints($0).setLimits(key: key, maxInFlight: max, rateLimit: rate, by: "test")
        }
    }

    @Test("max in flight wins over the adaptive limit at once and after every adaptation; cleared, adaptive again")
    func fixedLimitWinsOverAdaptation() async throws {
        try await withTestDatabase { database in
            let settings = AdaptiveLimit.Settings(initial: 4, ceiling: 64)
            let adapt: ([AdaptiveLimit.Signal]) async throws -> Void = { signals in
                try await database.query(
                    WebhookDeliverHandler.adaptQuery.sql,
                    AdaptiveLimitDatabaseTests.bindings(
                        Array(repeating: "client:a", count: signals.count), signals, settings))
            }
            // Set before the endpoint ever adapted: the queue obeys it at once.
            var set = try await Self.setLimits(database, "client:a", max: .set(2))
            #expect(set.maxInFlight == 2 && set.keyLimit == 2)
            #expect(try await Self.limits(database, "client:a").queue == 2)
            // Fast answers raise the adaptive limit past 2; the queue keeps the operator's.
            try await adapt(Array(repeating: .answered(milliseconds: 5), count: 10))
            var now = try await Self.limits(database, "client:a")
            #expect(now.adaptive == 14 && now.queue == 2, "\(now)")
            // A cut, then growth again, one outcome at a time: still 2.
            for signal in [AdaptiveLimit.Signal.overloaded, .answered(milliseconds: 5), .answered(milliseconds: 5)] {
                try await adapt([signal])
                now = try await Self.limits(database, "client:a")
                #expect(now.queue == 2, "after \(signal): \(now)")
            }
            // A higher fixed limit, above the adaptive one: it wins too, at once.
            set = try await Self.setLimits(database, "client:a", max: .set(40))
            #expect(set.keyLimit == 40)
            try await adapt([.answered(milliseconds: 5)])
            #expect(try await Self.limits(database, "client:a").queue == 40)
            // Cleared: the adaptive limit again, at once and as it moves.
            set = try await Self.setLimits(database, "client:a", max: EndpointLimits.Change<Int>.none)
            now = try await Self.limits(database, "client:a")
            #expect(set.maxInFlight == nil && set.keyLimit == now.adaptive && now.queue == now.adaptive, "\(now)")
            try await adapt([.answered(milliseconds: 5)])
            now = try await Self.limits(database, "client:a")
            #expect(now.queue == now.adaptive, "\(now)")
            // An endpoint that never adapted, cleared: no limit of its own (the kind's applies).
            _ = try await Self.setLimits(database, "client:b", max: .set(3))
            #expect(try await Self.limits(database, "client:b").queue == 3)
            set = try await Self.setLimits(database, "client:b", max: EndpointLimits.Change<Int>.none)
            #expect(set.keyLimit == nil)
            #expect(try await Self.limits(database, "client:b").queue == nil)
            // The rate limit alone leaves max in flight as it was.
            set = try await Self.setLimits(database, "client:b", rate: .set(5))
            #expect(set.maxInFlight == nil && set.rateLimit == 5)
        }
    }

    @Test("the token bucket: a burst, then nothing until a token is due; held deliveries come back a token apart")
    func tokenBucket() async throws {
        try await withTestDatabase { database in
            let pool = database.pool(size: 1)
            defer { Task { await pool.close() } }
            // No rate limit: nothing to take, send (and the handler never asks).
            #expect(try await EndpointRateLimit.take(key: "client:free", database: pool) == nil)
            // A burst of max(1, 5) = 5, then none. The bucket's clock is set ahead so that
            // nothing refills while this runs, however slowly.
            _ = try await Self.setLimits(database, "client:r", rate: .set(5))
            try await database.query(
                """
                UPDATE webhook_worker.endpoints SET rate_tokens = 5, rate_tokens_at = now() + interval '1 hour'
                WHERE key = 'client:r'
                """)
            for n in 1...5 {
                #expect(try await EndpointRateLimit.take(key: "client:r", database: pool) == nil, "token \(n)")
            }
            #expect(try await EndpointRateLimit.take(key: "client:r", database: pool) != nil, "the bucket is empty")
            // One token per 100 s: the first held delivery waits for it, the next a token later.
            _ = try await Self.setLimits(database, "client:s", rate: .set(0.01))
            #expect(try await EndpointRateLimit.take(key: "client:s", database: pool) == nil)
            let first = try #require(try await EndpointRateLimit.take(key: "client:s", database: pool))
            let second = try #require(try await EndpointRateLimit.take(key: "client:s", database: pool))
            #expect(first > .seconds(90) && first <= .seconds(101), "\(first)")
            let gap = second - first
            #expect(gap > .seconds(90) && gap <= .seconds(101), "held 1 \(first), held 2 \(second)")
            // Removing the rate limit: sends at once again.
            _ = try await Self.setLimits(database, "client:s", rate: EndpointLimits.Change<Double>.none)
            #expect(try await EndpointRateLimit.take(key: "client:s", database: pool) == nil)
        }
    }

    @Test(
        "max in flight holds across two workers (the receiver's peak) while the adaptive limit grows past it",
        arguments: [1, 3])
    func maxInFlightHolds(limit: Int) async throws {
        try await withTestDatabase(appTables: true) { database in
            let gauge = InFlightGauge()
            let fixture = try await DeliveryFixture.make(database: database) { _ in
                gauge.answer(after: .milliseconds(100))
            }
            try await fixture.addClient("capped")
            _ = try await Self.setLimits(database, "client:capped", max: .set(limit))
            let total = 40
            for _ in 0..<total { try await fixture.connectIntegration() }
            let delivered = try await fixture.deliverWithWorkers(replicas: 2, until: total)
            #expect(delivered)
            let now = try await Self.limits(database, "client:capped")
            print("max in flight \(limit): receiver's peak \(gauge.peak), adaptive limit \(now.adaptive ?? 0)")
            #expect(gauge.peak <= limit, "peak \(gauge.peak) in flight against a limit of \(limit)")
            // More than one at once when allowed (on a loaded machine, not always all of them).
            #expect(gauge.peak >= min(limit, 2), "deliveries ran \(gauge.peak) at once under a limit of \(limit)")
            #expect((now.adaptive ?? 0) > limit, "the adaptive limit grew past the operator's meanwhile")
            #expect(now.queue == limit)
            #expect(fixture.requests(to: "capped").count == total)
        }
    }

    @Test("a rate limit of 20/s holds across two workers, and held deliveries spend no attempt")
    func rateLimitHolds() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database) { _ in .ok }
            try await fixture.addClient("metered")
            let rate = 20.0
            _ = try await Self.setLimits(database, "client:metered", rate: .set(rate))
            let total = 100
            for _ in 0..<total { try await fixture.connectIntegration() }
            let delivered = try await fixture.deliverWithWorkers(replicas: 2, until: total)
            #expect(delivered)

            let arrivals = fixture.requests(to: "metered").map(\.receivedAt.timeIntervalSince1970).sorted()
            #expect(arrivals.count == total, "each delivery reached the receiver once")
            // The bucket: at most burst + rate × elapsed tokens in any span, measured between the
            // receiver's own timestamps. Slack for the time between taking a token and arriving,
            // which varies by up to a few hundred milliseconds on a loaded machine.
            let burst = max(1, rate)
            let slack = rate * 0.3 + 1
            var worst = (excess: -Double.infinity, count: 0, seconds: 0.0)
            for i in arrivals.indices {
                for j in i..<arrivals.count {
                    let count = j - i + 1
                    let excess = Double(count) - (burst + rate * (arrivals[j] - arrivals[i]))
                    if excess > worst.excess { worst = (excess, count, arrivals[j] - arrivals[i]) }
                }
            }
            let span = (arrivals.last ?? 0) - (arrivals.first ?? 0)
            let perSecond = Dictionary(grouping: arrivals) { Int($0 - (arrivals.first ?? 0)) }
                .sorted { $0.key < $1.key }.map(\.value.count)
            print(
                "rate limit \(rate)/s: \(arrivals.count) requests over \(String(format: "%.2f", span)) s, per second "
                    + "\(perSecond); worst span \(worst.count) requests in \(String(format: "%.3f", worst.seconds)) s")
            #expect(
                worst.excess <= slack,
                "\(worst.count) requests in \(worst.seconds) s: more than \(burst) + \(rate)/s × that")
            // It let them through at its rate, not much slower.
            #expect(span < (Double(total) - burst) / rate * 2 + 2, "took \(span) s")

            // Held deliveries waited unsent: one attempt each.
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE attempts <> 1") == 0)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.delivery_attempts") == total)
            // The queue's side: one attempt per job (a snooze gives its attempt back, no row).
            let jobAttempts = try await database.query(
                """
                SELECT count(*) AS rows, count(*) FILTER (WHERE attempt <> 1 OR outcome <> 'succeeded') AS others
                FROM webhook_worker.job_attempts WHERE kind = 'webhook.deliver'
                """
            ).first
            #expect(try jobAttempts?.decode("rows", as: Int.self) == total)
            #expect(try jobAttempts?.decode("others", as: Int.self) == 0)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.dead_letter_jobs") == 0)
        }
    }

    @Test("limits an operator cannot mean are refused with what is accepted")
    func parsing() throws {
        #expect(try EndpointLimits.parseMaxInFlight("3") == .set(3))
        #expect(try EndpointLimits.parseMaxInFlight("none") == .none)
        #expect(try EndpointLimits.parseMaxInFlight(" NONE ") == .none)
        #expect(try EndpointLimits.parseRateLimit("20") == .set(20))
        #expect(try EndpointLimits.parseRateLimit("0.5") == .set(0.5))
        #expect(try EndpointLimits.parseRateLimit("none") == .none)
        for bad in ["0", "-1", "10001", "1.5", "abc", "", "3 4"] {
            #expect(throws: EndpointLimits.InvalidLimit.self, "\(bad)") { try EndpointLimits.parseMaxInFlight(bad) }
        }
        for bad in ["0", "-2", "100001", "inf", "nan", "1e3", "abc", "", "0x10", ".", "1.2.3"] {
            #expect(throws: EndpointLimits.InvalidLimit.self, "\(bad)") { try EndpointLimits.parseRateLimit(bad) }
        }
        #expect(
            (try? EndpointLimits.parseMaxInFlight("0")) == nil
                && EndpointLimits.InvalidLimit(limit: "max in flight", text: "0", expected: "x").description
                    == "max in flight '0': x"
        )
        #expect(EndpointLimits.format(rate: 20) == "20" && EndpointLimits.format(rate: 0.5) == "0.5")
    }
}
