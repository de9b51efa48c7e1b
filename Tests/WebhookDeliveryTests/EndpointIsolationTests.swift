import Foundation
import JobQueue
import LibPQ
import Synchronization
import TestSupport
import Testing
import WebhookDelivery
import WebhookReceiver

/// Counts handlers running per concurrency key, and the most ever seen at once.
final class KeyConcurrency: Sendable {
    private let state = Mutex<(now: [String: Int], peak: [String: Int])>(([:], [:]))

    func enter(_ key: String) {
        state.withLock { state in
            state.now[key, default: 0] += 1
            state.peak[key] = max(state.peak[key] ?? 0, state.now[key]!)
        }
    }
    func leave(_ key: String) { state.withLock { $0.now[key, default: 0] -= 1 } }
    var peaks: [String: Int] { state.withLock { $0.peak } }
}

@Suite("Concurrency keys", .timeLimit(.minutes(2)))
struct ConcurrencyKeyTests {
    @Test("two replicas never run more than the limit per key, and every job runs once")
    func limitAcrossReplicas() async throws {
        try await withTestDatabase { database in
            try await database.query(
                """
                INSERT INTO webhook_worker.jobs (kind, concurrency_key)
                SELECT 'test.job', 'key-' || (n % 4) FROM generate_series(1, 120) n
                """)
            let counter = KeyConcurrency()
            let recorder = Recorder()
            let handler = ClosureHandler(concurrencyLimit: 3) { job in
                let key = job.concurrencyKey ?? "none"
                counter.enter(key)
                recorder.record(job)
                try? await Task.sleep(for: .milliseconds(30))
                counter.leave(key)
                return .complete
            }
            let workers = (0..<2).map { _ in
                RunningWorker(database, handlers: [handler]) {
                    $0.concurrency = 16
                    $0.pollInterval = .milliseconds(50)
                }
            }
            let drained = try await eventually(timeout: .seconds(60)) {
                try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 0
            }
            for worker in workers { try await worker.stop() }
            #expect(drained)
            #expect(recorder.totalCalls == 120 && recorder.duplicates.isEmpty)
            #expect(counter.peaks.count == 4)
            #expect(counter.peaks.values.allSatisfy { $0 <= 3 }, "\(counter.peaks)")
            #expect(counter.peaks.values.contains(3), "the limit should be reached: \(counter.peaks)")
        }
    }

    @Test("a saturated key's backlog does not hold up other keys or unkeyed jobs queued behind it")
    func saturatedKeyDoesNotBlock() async throws {
        try await withTestDatabase { database in
            try await database.query(
                """
                INSERT INTO webhook_worker.jobs (kind, concurrency_key, run_at) SELECT 'test.job', 'busy', now() - \
                interval '1 hour' FROM generate_series(1, 2000)
                """
            )
            let gate = Gate()
            let others = Recorder()
            let handler = ClosureHandler(concurrencyLimit: 2) { job in
                if job.concurrencyKey == "busy" {
                    await gate.wait()
                } else {
                    others.record(job)
                }
                return .complete
            }
            let worker = RunningWorker(database, handlers: [handler]) { $0.pollInterval = .milliseconds(50) }
            #expect(await eventually { worker.worker.inFlightCount == 2 })
            try await database.query(
                """
                INSERT INTO webhook_worker.jobs (kind, concurrency_key) SELECT 'test.job', 'quiet-' || n FROM \
                generate_series(1, 10) n
                """
            )
            try await database.query(
                "INSERT INTO webhook_worker.jobs (kind) SELECT 'test.job' FROM generate_series(1, 10)")
            #expect(await eventually(timeout: .seconds(5)) { others.totalCalls == 20 })
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.jobs WHERE concurrency_key = 'busy' AND state = 'running'")
                    == 2)
            gate.open()
            try await worker.stop()
        }
    }

    @Test("a paused kind is not claimed until resumed; running jobs finish")
    func pauseAndResume() async throws {
        try await withTestDatabase { database in
            try await database.query("INSERT INTO webhook_worker.paused_kinds (kind) VALUES ('test.job')")
            try await database.query(
                "INSERT INTO webhook_worker.jobs (kind) SELECT 'test.job' FROM generate_series(1, 5)")
            let recorder = Recorder()
            let worker = RunningWorker(
                database,
                handlers: [
                    ClosureHandler {
                        recorder.record($0); return .complete
                    }
                ]
            ) {
                $0.pollInterval = .milliseconds(100)
            }
            try await Task.sleep(for: .seconds(1))
            #expect(recorder.totalCalls == 0)
            try await database.query("DELETE FROM webhook_worker.paused_kinds WHERE kind = 'test.job'")
            #expect(await eventually(timeout: .seconds(5)) { recorder.totalCalls == 5 })
            try await worker.stop()
        }
    }
}

@Suite("Endpoint isolation", .timeLimit(.minutes(2)))
struct EndpointIsolationTests {
    /// Milliseconds from each healthy insert to its POST arriving.
    static func latencies(_ inserts: [Date], _ received: [ReceivedWebhook]) -> [Double] {
        zip(inserts, received.sorted { $0.receivedAt < $1.receivedAt }).map {
            $1.receivedAt.timeIntervalSince($0) * 1000
        }
    }

    @Test(
        "a hanging endpoint with a backlog does not delay a healthy one, and stays within its limit on three replicas")
    func hangingEndpointIsolated() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database) { request in
                request.uri == "/hanging" ? .hang : .ok
            }
            try await fixture.addClient("healthy")
            try await fixture.addClient("hanging", grantUser: "user-2")
            for _ in 0..<150 { try await fixture.connectIntegration(user: "user-2") }
            let replicas = (0..<3).map { _ in
                fixture.startWorker(requestTimeout: .seconds(2), concurrency: 32) {
                    $0.pollInterval = .milliseconds(200)
                }
            }
            // Let the backlog fan out and the hanging endpoint fill its slots.
            #expect(
                try await eventually(timeout: .seconds(20)) {
                    try await database.count("SELECT count(*) FROM webhook_worker.webhook_deliveries") == 150
                })
            let peak = Atomic<Int>(0)
            let sampling = Task {
                while !Task.isCancelled {
                    let running =
                        (try? await database.count(
                            """
                            SELECT count(*) FROM webhook_worker.jobs WHERE concurrency_key = 'client:hanging' AND \
                            state = 'running'
                            """
                        )) ?? 0
                    peak.max(running, ordering: .relaxed)
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            var inserts: [Date] = []
            for _ in 0..<20 {
                inserts.append(Date())
                try await fixture.connectIntegration()
                try await Task.sleep(for: .milliseconds(100))
            }
            let delivered = await eventually(timeout: .seconds(10)) { fixture.requests(to: "healthy").count == 20 }
            sampling.cancel()
            for (worker, sender) in replicas {
                try await worker.stop()
                try await sender.shutdown()
            }
            await fixture.receiver.stop()
            #expect(delivered)
            let latencies = Self.latencies(inserts, fixture.requests(to: "healthy")).sorted()
            let p50 = latencies[latencies.count / 2]
            print(
                "isolation: healthy insert-to-POST p50 \(Int(p50)) ms, max \(Int(latencies.last!)) ms; "
                    + "hanging endpoint peak in flight \(peak.load(ordering: .relaxed)), "
                    + "requests \(fixture.requests(to: "hanging").count)"
            )
            #expect(p50 < 250, "healthy p50 \(p50) ms of \(latencies)")
            #expect(latencies.last! < 1000, "healthy max \(latencies.last!) ms")
            #expect(
                peak.load(ordering: .relaxed) <= 4,
                "the hanging endpoint had \(peak.load(ordering: .relaxed)) in flight")
            #expect(!fixture.requests(to: "hanging").isEmpty, "the hanging endpoint is still tried")
        }
    }

    @Test("failures open the circuit; held deliveries spend no attempts; a probe closes it and the rest go out")
    func circuitOpensAndCloses() async throws {
        try await withTestDatabase(appTables: true) { database in
            let healthy = Atomic<Bool>(false)
            let fixture = try await DeliveryFixture.make(database: database) { _ in
                healthy.load(ordering: .relaxed) ? .ok : .status(503)
            }
            try await fixture.addClient("flaky")
            let (worker, sender) = fixture.startWorker(schedule: [
                .milliseconds(200), .milliseconds(200), .milliseconds(200),
            ]) {
                _ in
            } endpoint: {
                $0.failureThreshold = 3
                $0.cooldown = .seconds(1)
            }
            for _ in 0..<10 { try await fixture.connectIntegration() }
            #expect(
                try await eventually(timeout: .seconds(10)) {
                    try await database.scalar("SELECT state FROM webhook_worker.endpoints", as: String.self) == "open"
                })
            let failedWhileClosed = fixture.requests(to: "flaky").count
            healthy.store(true, ordering: .relaxed)
            let delivered = try await eventually(timeout: .seconds(20)) {
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'delivered'") == 10
            }
            try await stopAll(worker, sender, fixture)
            #expect(delivered)
            #expect(
                try await database.scalar("SELECT state FROM webhook_worker.endpoints", as: String.self) == "closed")
            #expect(try await database.scalar("SELECT recoveries FROM webhook_worker.endpoints", as: Int.self) == 1)
            // Every request is one recorded attempt; deliveries held while the circuit was open
            // were not attempted meanwhile.
            let attempts = try await database.count(
                "SELECT coalesce(sum(attempts), 0) FROM webhook_worker.webhook_deliveries")
            #expect(attempts == fixture.requests(to: "flaky").count)
            #expect(
                failedWhileClosed <= 4 + 3, "at most one wave of the limit plus the retries before the circuit opened")
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.dead_letter_jobs") == 0)
        }
    }

    @Test(
        """
        an endpoint failing past disable-after is disabled: waiting and new deliveries end endpoint_disabled, unsent; \
        enabling and retrying by client delivers them
        """
    )
    func disabledEndpoint() async throws {
        try await withTestDatabase(appTables: true) { database in
            let healthy = Atomic<Bool>(false)
            let fixture = try await DeliveryFixture.make(database: database) { _ in
                healthy.load(ordering: .relaxed) ? .ok : .status(500)
            }
            try await fixture.addClient("doomed")
            let (worker, sender) = fixture.startWorker(schedule: [
                .milliseconds(300), .milliseconds(300), .milliseconds(300), .milliseconds(300),
            ]) {
                _ in
            } endpoint: {
                $0.failureThreshold = 1
                $0.cooldown = .milliseconds(200)
                $0.disableAfter = .seconds(1)
            }
            for _ in 0..<3 { try await fixture.connectIntegration() }
            #expect(
                try await eventually(timeout: .seconds(15)) {
                    try await database.count(
                        "SELECT count(*) FROM webhook_worker.dead_letter_jobs WHERE reason = 'endpoint_disabled'") == 3
                })
            #expect(
                try await database.scalar("SELECT state FROM webhook_worker.endpoints", as: String.self) == "disabled")
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.dead_letter_jobs WHERE concurrency_key = 'client:doomed'")
                    == 3,
                "dead letters keep their endpoint, so a requeue is limited like the original")
            let sent = fixture.requests(to: "doomed").count
            try await fixture.connectIntegration()
            #expect(
                try await eventually(timeout: .seconds(10)) {
                    try await database.count(
                        "SELECT count(*) FROM webhook_worker.dead_letter_jobs WHERE reason = 'endpoint_disabled'") == 4
                })
            #expect(fixture.requests(to: "doomed").count == sent, "nothing is sent to a disabled endpoint")
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'failed'") == 4)

            healthy.store(true, ordering: .relaxed)
            try await database.query("SELECT webhook_worker.set_endpoint_enabled('client:doomed', true, 'test')")
            let (output, status) = try CommandLineTests.run(
                "$BIN dead-letters retry --client doomed", environment: ["DATABASE_URL": database.conninfo])
            #expect(status == 0, "\(output)")
            let delivered = try await eventually(timeout: .seconds(10)) {
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'delivered'") == 4
            }
            try await stopAll(worker, sender, fixture)
            #expect(delivered)
        }
    }
}
