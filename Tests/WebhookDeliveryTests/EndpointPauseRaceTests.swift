import Foundation
import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing
import WebhookReceiver

@testable import WebhookDelivery

/// The replica that read a 429 or 503 with `Retry-After` keeps the pause in memory
/// (``EndpointPauseMemory``) and checks it just before each request, so that its deliveries
/// re-checked a moment before the pause reached the database are held too.
@Suite("Endpoint pause kept in memory", .timeLimit(.minutes(4)))
struct EndpointPauseRaceTests {
    @Test("a pause the database no longer shows still holds the deliveries of the replica that read it")
    func pauseHeldInMemory() async throws {
        try await withTestDatabase(appTables: true) { database in
            let count = Atomic<Int>(0)
            let fixture = try await DeliveryFixture.make(database: database) { _ in
                count.add(1, ordering: .relaxed).newValue == 1 ? .status(429, headers: [("Retry-After", "120")]) : .ok
            }
            try await fixture.addClient("busy")
            try await fixture.connectIntegration()
            let (worker, sender) = fixture.startWorker()
            #expect(
                try await eventually(timeout: .seconds(60)) {
                    try await database.count(
                        "SELECT count(*) FROM webhook_worker.endpoints WHERE paused_until > now()") == 1
                })
            // The re-check of the next delivery reads no pause, as one read a moment before the
            // pause was recorded would: only the replica's memory can hold it.
            try await database.query("UPDATE webhook_worker.endpoints SET paused_until = NULL")
            try await fixture.connectIntegration()
            let held = try await eventually(timeout: .seconds(60)) {
                try await database.count(
                    """
                    SELECT count(*) FROM webhook_worker.jobs
                    WHERE kind = 'webhook.deliver' AND last_error LIKE 'waiting: the endpoint asked for a pause%'
                    """) == 2
            }
            try await stopAll(worker, sender, fixture)
            #expect(held, "both deliveries wait out the pause")
            #expect(fixture.requests(to: "busy").count == 1, "nothing is sent inside the pause")
            let attempts = try await database.count(
                "SELECT coalesce(sum(attempts), 0) FROM webhook_worker.webhook_deliveries")
            #expect(attempts == 1, "the held delivery spent no attempt")
        }
    }

    @Test("the memory keeps the longest pause of each endpoint and forgets those that ended")
    func memory() {
        let memory = EndpointPauseMemory()
        let now = ContinuousClock.now
        #expect(memory.remaining("client:a") == nil)
        memory.record("client:a", until: now + .seconds(60))
        memory.record("client:a", until: now + .seconds(5))
        memory.record("client:b", until: now - .seconds(1))
        #expect((memory.remaining("client:a") ?? .zero) > .seconds(50))
        #expect(memory.remaining("client:b") == nil)
        #expect(memory.remaining("client:c") == nil)
    }
}
