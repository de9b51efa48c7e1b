import Foundation
import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing
import WebhookReceiver

@testable import WebhookDelivery

/// The adaptive limit in the database (`webhook_worker.endpoints_adapt`, sql/webhook_delivery/012, 013):
/// the same rule as ``AdaptiveLimit``, held across replicas, obeyed by the claim.
@Suite("Adaptive endpoint limit in the database", .timeLimit(.minutes(4)))
struct AdaptiveLimitDatabaseTests {
    /// Reads the endpoint's adaptive row and the queue's limit for its key.
    static func limits(_ database: TestDatabase, _ key: String) async throws -> (applied: Int?, queue: Int?) {
        let row = try await database.query(
            """
            SELECT (SELECT applied FROM webhook_worker.endpoint_concurrency WHERE key = $1) AS applied,
                   (SELECT max_running FROM webhook_worker.concurrency_key_limits
                    WHERE kind = 'webhook.deliver' AND concurrency_key = $1) AS queue
            """, [key]
        ).first
        return (try row?.decodeIfPresent("applied"), try row?.decodeIfPresent("queue"))
    }

    @Test("the database moves a limit exactly as AdaptiveLimit does, one outcome at a time or in a batch")
    func sameRuleAsSwift() async throws {
        try await withTestDatabase { database in
            let settings = AdaptiveLimit.Settings(initial: 4, ceiling: 20)
            var model = AdaptiveLimit(settings: settings)
            // Growth, a slow answer, a 4xx, cuts, recovery: every branch of the rule.
            var signals: [AdaptiveLimit.Signal] = Array(repeating: .answered(milliseconds: 30), count: 25)
            signals += [.answered(milliseconds: 400), .neutral, .overloaded, .overloaded, .overloaded]
            signals += Array(repeating: .answered(milliseconds: 60), count: 5) + [.overloaded]
            for signal in signals {
                model.record(signal, settings)
                try await database.query(
                    WebhookDeliverHandler.adaptQuery.sql, Self.bindings(["client:a"], [signal], settings))
                let stored = try await database.query(
                    "SELECT limit_value, latency_ms FROM webhook_worker.endpoint_concurrency WHERE key = 'client:a'"
                ).first
                #expect(abs((try stored?.decode("limit_value", as: Double.self) ?? -1) - model.value) < 1e-9)
                #expect(
                    abs((try stored?.decodeIfPresent("latency_ms", as: Double.self) ?? 0) - (model.latency ?? 0)) < 1e-6
                )
                let (applied, queue) = try await Self.limits(database, "client:a")
                #expect(applied == model.current(settings) && queue == model.current(settings), "after \(signal)")
            }
            // A batch of outcomes for two endpoints, given out of key order, in one statement.
            var b = AdaptiveLimit(settings: settings)
            var c = AdaptiveLimit(settings: settings)
            for _ in 0..<3 { c.record(.answered(milliseconds: 10), settings) }
            b.record(.overloaded, settings)
            try await database.query(
                WebhookDeliverHandler.adaptQuery.sql,
                Self.bindings(
                    ["client:c", "client:b", "client:c", "client:c"],
                    [
                        .answered(milliseconds: 10), .overloaded, .answered(milliseconds: 10),
                        .answered(milliseconds: 10),
                    ],
                    settings))
            let limitsB = try await Self.limits(database, "client:b")
            let limitsC = try await Self.limits(database, "client:c")
            #expect(limitsB.applied == b.current(settings) && limitsB.queue == b.current(settings))
            #expect(limitsC.applied == c.current(settings) && limitsC.queue == c.current(settings))
        }
    }

    @Test("timeouts of requests in flight together cut the limit once, in one batch or in several")
    func oneCutPerWindow() async throws {
        try await withTestDatabase { database in
            let settings = AdaptiveLimit.Settings(initial: 4, ceiling: 4)
            // Four 1 s timeouts in one batch: all four were sent before the first one's cut.
            let stall: [AdaptiveLimit.Signal] = Array(repeating: .overloaded, count: 4)
            try await database.query(
                WebhookDeliverHandler.adaptQuery.sql,
                Self.bindings(Array(repeating: "client:w", count: 4), stall, settings, overloadedMilliseconds: 1000))
            let after1 = try await Self.limits(database, "client:w")
            #expect(after1.applied == 2 && after1.queue == 2, "limits: \(after1)")
            // Another of the same stall, recorded in a later transaction: it took a minute, so it
            // was sent before the cut (however slowly this test runs), and cuts nothing.
            try await database.query(
                WebhookDeliverHandler.adaptQuery.sql,
                Self.bindings(["client:w"], [.overloaded], settings, overloadedMilliseconds: 60_000))
            let after2 = try await Self.limits(database, "client:w")
            #expect(after2.applied == 2 && after2.queue == 2, "limits: \(after2)")
            // A request sent after the cut (it took 0 ms) and failing: a new round, cut to the floor.
            try await database.query(
                WebhookDeliverHandler.adaptQuery.sql, Self.bindings(["client:w"], [.overloaded], settings))
            let after3 = try await Self.limits(database, "client:w")
            #expect(after3.applied == 1 && after3.queue == 1, "limits: \(after3)")
        }
    }

    /// Replicas' batches at once, over endpoints some of which are new to every batch: locked in
    /// key order, they never deadlock, and every endpoint's limit in the queue is the whole part of
    /// its row's (a batch that applied its limit and one that did not cannot interleave).
    @Test("batches of several replicas at once over shared and new endpoints: no deadlock, limits applied")
    func concurrentBatches() async throws {
        let environment = ProcessInfo.processInfo.environment
        let seeds: [UInt64] =
            environment["STRESS_SEED"].flatMap { UInt64($0) }.map { [$0] }
            ?? [1, 2, 3] + (0..<3).map { _ in UInt64.random(in: 1...UInt64(UInt32.max)) }
        let settings = AdaptiveLimit.Settings(initial: 4, ceiling: 12)
        for seed in seeds {
            try await withTestDatabase { database in
                let failed = await withTaskGroup(of: [String].self) { group in
                    for replica in 0..<4 {
                        group.addTask {
                            await Self.adaptRounds(database, seed: seed &+ UInt64(replica) &* 7919, settings)
                                .errors.map { "replica \(replica): \($0)" }
                        }
                    }
                    return await group.reduce(into: []) { $0 += $1 }
                }
                let replay = "seed \(seed) (STRESS_SEED=\(seed) replays it)"
                #expect(failed.isEmpty, "\(replay): \(failed.prefix(3))")
                let rows = try await database.query(
                    """
                    SELECT c.key, c.limit_value, c.applied, l.max_running
                    FROM webhook_worker.endpoint_concurrency c
                    LEFT JOIN webhook_worker.concurrency_key_limits l
                        ON l.kind = 'webhook.deliver' AND l.concurrency_key = c.key
                    """
                ).rows
                #expect(rows.count == 5 + Self.rounds, "\(replay): \(rows.count) endpoints")
                for row in rows {
                    let value = try row.decode("limit_value", as: Double.self)
                    let applied: Int? = try row.decodeIfPresent("applied")
                    let queue: Int? = try row.decodeIfPresent("max_running")
                    let whole = min(max(Int(value.rounded(.down)), settings.floor), settings.ceiling)
                    let key = try row.decode("key", as: String.self)
                    let seen = "limit \(value), applied \(applied ?? -1), queue \(queue ?? -1)"
                    #expect(applied == whole && queue == whole, "\(replay): \(key) \(seen)")
                }
            }
        }
    }

    static let rounds = 25

    /// One replica's batches: each round, the round's new endpoint, a shared one and up to 12
    /// answers drawn from both kinds. Returns the errors, which should be none.
    /// One replica's batches: each round, the round's new endpoint, a shared one and up to 12
    /// answers drawn from both kinds; with `growthOnly`, every answer a fast 2xx, so that each
    /// adds exactly 1 to its endpoint's limit whatever the order. Returns the errors (there
    /// should be none) and how many answers each endpoint got.
    static func adaptRounds(
        _ database: TestDatabase, seed: UInt64, _ settings: AdaptiveLimit.Settings, growthOnly: Bool = false
    ) async -> (errors: [String], answers: [String: Int]) {
        var random = SeededGenerator(seed: seed)
        var errors: [String] = []
        var answers: [String: Int] = [:]
        do {
            try await database.withConnection { connection in
                for round in 0..<rounds {
                    let pool = (0..<5).map { "client:s\($0)" } + ["client:r\(round)"]
                    let drawn = (0..<Int.random(in: 1...12, using: &random)).map { _ in
                        pool.randomElement(using: &random)!
                    }
                    let keys = ["client:r\(round)", "client:s\(round % 5)"] + drawn
                    let signals: [AdaptiveLimit.Signal] = keys.map { _ in
                        !growthOnly && Int.random(in: 0..<4, using: &random) == 0
                            ? .overloaded : .answered(milliseconds: Double.random(in: 1...40, using: &random))
                    }
                    do {
                        _ = try await connection.query(
                            WebhookDeliverHandler.adaptQuery, Self.bindings(keys, signals, settings))
                        for key in keys { answers[key, default: 0] += 1 }
                    } catch {
                        errors.append("round \(round): \(error)")
                    }
                }
            }
        } catch {
            errors.append("\(error)")
        }
        return (errors, answers)
    }

    /// No batch's answers are lost to another's: two replicas reading a limit before either wrote
    /// it would leave it one short for every answer of the batch written first.
    @Test("answers of several replicas' batches at once all count")
    func concurrentBatchesAllCount() async throws {
        let seed = UInt64.random(in: 1...UInt64(UInt32.max))
        // Every answer fast (under the 50 ms slow floor) and a ceiling out of reach: +1 each.
        let settings = AdaptiveLimit.Settings(initial: 4, ceiling: 100_000)
        try await withTestDatabase { database in
            let results = await withTaskGroup(of: (errors: [String], answers: [String: Int]).self) { group in
                for replica in 0..<4 {
                    group.addTask {
                        await Self.adaptRounds(
                            database, seed: seed &+ UInt64(replica) &* 7919, settings, growthOnly: true)
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let replay = "seed \(seed)"
            #expect(results.flatMap(\.errors).isEmpty, "\(replay): \(results.flatMap(\.errors).prefix(3))")
            let answers = results.reduce(into: [String: Int]()) { total, result in
                total.merge(result.answers, uniquingKeysWith: +)
            }
            for row in try await database.query(
                "SELECT key, limit_value FROM webhook_worker.endpoint_concurrency"
            ).rows {
                let key = try row.decode("key", as: String.self)
                let limit = try row.decode("limit_value", as: Double.self)
                #expect(limit == Double(4 + (answers[key] ?? 0)), "\(replay): \(key) at \(limit)")
            }
            #expect(
                try await database.count("SELECT count(*) FROM webhook_worker.endpoint_concurrency") == answers.count)
        }
    }

    static func bindings(
        _ keys: [String], _ signals: [AdaptiveLimit.Signal], _ settings: AdaptiveLimit.Settings,
        overloadedMilliseconds: Double = 0
    ) -> [any PQEncodable] {
        let milliseconds = signals.map { signal -> Double in
            if case .answered(let value) = signal { return value }
            return overloadedMilliseconds
        }
        let n = keys.count
        return [
            PQArray(keys), PQArray(signals.map(\.name)), PQArray(milliseconds),
            PQArray(Array(repeating: settings.floor, count: n)), PQArray(Array(repeating: settings.initial, count: n)),
            PQArray(Array(repeating: settings.ceiling, count: n)),
            PQArray(Array(repeating: settings.slowFactor, count: n)),
            PQArray(Array(repeating: settings.slowFloor, count: n)),
            PQArray(Array(repeating: settings.backoff, count: n)),
            PQArray(Array(repeating: settings.smoothing, count: n)),
        ]
    }

    @Test("a fast healthy endpoint's limit grows past 4, and the claim lets more than 4 of its deliveries run at once")
    func growsForFastEndpoint() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database) { _ in .delay(.milliseconds(15), then: .ok)
            }
            try await fixture.addClient("fast")
            for _ in 0..<200 { try await fixture.connectIntegration() }
            let peak = Atomic<Int>(0)
            let (worker, sender) = fixture.startWorker(concurrency: 32)
            let sampling = Task {
                while !Task.isCancelled {
                    let running =
                        (try? await database.count(
                            "SELECT count(*) FROM webhook_worker.jobs "
                                + "WHERE concurrency_key = 'client:fast' AND state = 'running'"
                        )) ?? 0
                    peak.max(running, ordering: .relaxed)
                    try? await Task.sleep(for: .milliseconds(10))
                }
            }
            let delivered = try await eventually(timeout: .seconds(60)) {
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'delivered'") == 200
            }
            sampling.cancel()
            try await stopAll(worker, sender, fixture)
            #expect(delivered)
            let (applied, queue) = try await Self.limits(database, "client:fast")
            print("adaptive: fast endpoint's limit \(applied ?? 0), peak in flight \(peak.load(ordering: .relaxed))")
            #expect((applied ?? 0) >= 32, "200 fast answers raise the limit well past its start")
            #expect(queue == applied, "the queue obeys the endpoint's limit")
            #expect(peak.load(ordering: .relaxed) > 4, "more than the starting limit ran at once")
        }
    }

    @Test("timeouts cut a grown limit to the floor")
    func cutByTimeouts() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database) { _ in .hang }
            try await fixture.addClient("stuck")
            // The endpoint had grown to 16 while healthy.
            try await database.query(
                """
                INSERT INTO webhook_worker.endpoint_concurrency (key, limit_value, latency_ms, applied)
                VALUES ('client:stuck', 16, 5, 16);
                """)
            try await database.query(
                "SELECT webhook_worker.set_concurrency_key_limit('webhook.deliver', 'client:stuck', 16)")
            for _ in 0..<20 { try await fixture.connectIntegration() }
            let (worker, sender) = fixture.startWorker(requestTimeout: .milliseconds(400)) { _ in
            } endpoint: {
                $0.failureThreshold = 1000
            }
            let floored = try await eventually(timeout: .seconds(60)) {
                let limits = try await Self.limits(database, "client:stuck")
                return limits.applied == 1 && limits.queue == 1
            }
            try await stopAll(worker, sender, fixture)
            let now = try await Self.limits(database, "client:stuck")
            #expect(floored, "limits now: \(now)")
        }
    }
}
