import Foundation
import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookReceiver

@Suite("Endpoint isolation", .timeLimit(.minutes(4)))
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
                // A hanging request holds its slot for the 5 s timeout: a healthy delivery stuck behind
                // the backlog would wait that long, which the bounds below tell from a loaded machine.
                fixture.startWorker(requestTimeout: .seconds(5), concurrency: 32) {
                    $0.pollInterval = .milliseconds(200)
                }
            }
            // Let the backlog fan out and the hanging endpoint fill its slots.
            #expect(
                try await eventually(timeout: .seconds(60)) {
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
            let delivered = await eventually(timeout: .seconds(60)) { fixture.requests(to: "healthy").count == 20 }
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
            #expect(p50 < 1000, "healthy p50 \(p50) ms of \(latencies)")
            #expect(latencies.last! < 2500, "healthy max \(latencies.last!) ms")
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
                try await eventually(timeout: .seconds(60)) {
                    try await database.scalar("SELECT state FROM webhook_worker.endpoints", as: String.self) == "open"
                })
            // Requests that reached the receiver before the circuit opened (the event's time, not
            // when this test saw it: on a loaded machine a probe may already have followed).
            let openedAt = try #require(
                try await database.scalar(
                    """
                    SELECT extract(epoch FROM min(created_at))::float8 FROM webhook_worker.endpoint_events
                    WHERE event = 'circuit_opened'
                    """, as: Double.self))
            let failedWhileClosed = fixture.requests(to: "flaky").filter {
                $0.receivedAt.timeIntervalSince1970 <= openedAt
            }.count
            healthy.store(true, ordering: .relaxed)
            let delivered = try await eventually(timeout: .seconds(60)) {
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
                try await eventually(timeout: .seconds(60)) {
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
                try await eventually(timeout: .seconds(60)) {
                    try await database.count(
                        "SELECT count(*) FROM webhook_worker.dead_letter_jobs WHERE reason = 'endpoint_disabled'") == 4
                })
            #expect(fixture.requests(to: "doomed").count == sent, "nothing is sent to a disabled endpoint")
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'failed'") == 4)

            healthy.store(true, ordering: .relaxed)
            try await database.query("SELECT webhook_worker.set_endpoint_enabled('client:doomed', true, 'test')")
            let (output, status) = try await runWorker(
                ["dead-letters", "retry", "--client", "doomed"], environment: ["DATABASE_URL": database.conninfo])
            #expect(status == 0, "\(output)")
            let delivered = try await eventually(timeout: .seconds(60)) {
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'delivered'") == 4
            }
            try await stopAll(worker, sender, fixture)
            #expect(delivered)
        }
    }

    @Test(
        """
        a probe answered 429 opens the circuit again; a probe answered 404 closes it (the endpoint answered), and \
        the delivery fails by its own rules
        """
    )
    func probeAnswered4xx() async throws {
        try await withTestDatabase(appTables: true) { database in
            // The first request fails; each probe is held until the test has seen the state it is
            // probing from, so no state can pass unseen on a slow machine.
            let received = Atomic<Int>(0)
            let firstProbe = AnswerGate()
            let secondProbe = AnswerGate()
            let fixture = try await DeliveryFixture.make(database: database) { _ in
                switch received.add(1, ordering: .relaxed).newValue {
                case 1: .status(503)
                case 2: firstProbe.hold(429)
                default: secondProbe.hold(404)
                }
            }
            try await fixture.addClient("probed")
            let (worker, sender) = fixture.startWorker(schedule: Array(repeating: .milliseconds(100), count: 8)) {
                _ in
            } endpoint: {
                $0.failureThreshold = 1
                $0.cooldown = .milliseconds(300)
            }
            func endpoint() async throws -> (state: String?, trips: Int?) {
                let row = try await database.query("SELECT state, trips FROM webhook_worker.endpoints").first
                return (try row?.decodeIfPresent("state"), try row?.decodeIfPresent("trips"))
            }
            try await fixture.connectIntegration()
            // 503 opened the circuit; after the cooldown one probe is in flight.
            #expect(
                try await eventually(timeout: .seconds(60)) {
                    try await endpoint() == ("half_open", 1) && fixture.requests(to: "probed").count == 2
                })

            // 429 is back-pressure: a failed probe, the circuit opens again for a longer pause.
            firstProbe.open()
            #expect(
                try await eventually(timeout: .seconds(60)) {
                    let trips = try await endpoint().trips
                    return trips == 2 && fixture.requests(to: "probed").count == 3
                })
            #expect(try await endpoint() == ("half_open", 2))

            // 404 is the receiver's answer about this delivery: the endpoint is up, the circuit closes.
            secondProbe.open()
            #expect(try await eventually(timeout: .seconds(60)) { try await endpoint() == ("closed", 0) })
            // The endpoint's state is written as the answer arrives; the attempt's row comes with
            // the job's outcome, in a batch that may commit a moment later.
            let answered = try await eventually(timeout: .seconds(60)) {
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.delivery_attempts WHERE http_status = 404") >= 1
            }
            try await stopAll(worker, sender, fixture)
            #expect(answered)
            #expect(
                try await database.scalar("SELECT recoveries FROM webhook_worker.endpoints", as: Int.self) == 1)
            // The delivery itself did not succeed: it is retrying (or failed), never delivered.
            #expect(await fixture.status(client: "probed") != "delivered")
        }
    }
}
