import Foundation
import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookReceiver

@Suite("Endpoint pause (Retry-After)", .timeLimit(.minutes(4)))
struct EndpointPauseTests {
    @Test(
        """
        a 429 or 503 with Retry-After pauses the endpoint on three replicas: no request inside the window, held \
        deliveries spend no attempts, the rest go out after it
        """,
        arguments: [429, 503])
    func retryAfterPausesTheEndpoint(status: Int) async throws {
        try await withTestDatabase(appTables: true) { database in
            let count = Atomic<Int>(0)
            let fixture = try await DeliveryFixture.make(database: database) { _ in
                // The first request asks for a 3 s pause; the others take a little while, so that
                // several are in flight across the replicas when it answers.
                count.add(1, ordering: .relaxed).newValue == 1
                    ? .status(status, headers: [("Retry-After", "3")])
                    : .delay(.milliseconds(20), then: .ok)
            }
            try await fixture.addClient("paced")
            for _ in 0..<40 { try await fixture.connectIntegration() }
            let delivered = try await fixture.deliverWithWorkers(replicas: 3, until: 40)
            #expect(delivered)

            let row = try #require(
                try await database.query(
                    """
                    SELECT extract(epoch FROM paused_at)::float8 AS paused_at,
                           extract(epoch FROM paused_until)::float8 AS paused_until, throttled_seconds
                    FROM webhook_worker.endpoints WHERE key = 'client:paced'
                    """
                ).first, "the endpoint's pause was recorded")
            let pausedAt = Date(timeIntervalSince1970: try row.decode("paused_at", as: Double.self))
            let pausedUntil = Date(timeIntervalSince1970: try row.decode("paused_until", as: Double.self))
            let throttled = try row.decode("throttled_seconds", as: Double.self)
            #expect(abs(pausedUntil.timeIntervalSince(pausedAt) - 3) < 0.1, "paused for the 3 s asked")
            #expect(abs(throttled - 3) < 0.1, "throttled time \(throttled) s")

            // Requests already on their way when the pause was recorded (re-checked before it) may
            // land just after it; none may land later inside the window.
            let requests = fixture.requests(to: "paced")
            let inside = requests.filter {
                $0.receivedAt > pausedAt.addingTimeInterval(0.25) && $0.receivedAt < pausedUntil
            }
            let after = requests.filter { $0.receivedAt >= pausedUntil }
            print(
                "pause (\(status)): \(requests.count) requests, \(inside.count) inside the window, "
                    + "\(after.count) after it")
            #expect(inside.isEmpty, "requests inside the pause: \(inside.map(\.receivedAt))")
            #expect(!after.isEmpty, "the held deliveries went out after the pause")
            // Every request is one recorded attempt: the held deliveries spent none while waiting.
            let attempts = try await database.count(
                "SELECT coalesce(sum(attempts), 0) FROM webhook_worker.webhook_deliveries")
            #expect(attempts == requests.count)
            #expect(requests.count == 41, "40 deliveries and the one answered \(status) once")
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.dead_letter_jobs") == 0)
        }
    }

    @Test("a Retry-After longer than the cap pauses the endpoint for the cap only")
    func pauseIsCapped() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database) { _ in
                .status(429, headers: [("Retry-After", "86400")])
            }
            try await fixture.addClient("greedy")
            let (worker, sender) = fixture.startWorker { _ in
            } endpoint: {
                $0.maxEndpointPause = .seconds(2)
            }
            try await fixture.connectIntegration()
            let paused = try await eventually(timeout: .seconds(60)) {
                try await database.count("SELECT count(*) FROM webhook_worker.endpoints WHERE paused_until IS NOT NULL")
                    == 1
            }
            try await stopAll(worker, sender, fixture)
            #expect(paused)
            let seconds = try await database.scalar(
                "SELECT extract(epoch FROM paused_until - paused_at)::float8 FROM webhook_worker.endpoints",
                as: Double.self)
            #expect(abs((seconds ?? 0) - 2) < 0.1, "paused for \(seconds ?? 0) s")
        }
    }
}
