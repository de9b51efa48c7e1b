import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery

/// An operator's cancel that lands while an attempt is in flight.
@Suite("Cancel racing an attempt", .timeLimit(.minutes(4)))
struct CancelRaceTests {
    @Test(
        """
        a cancel during an attempt the receiver then answers 2xx ends delivered (the receiver has it); one it \
        answers 5xx stays cancelled, without delivered_at, and is not tried again
        """
    )
    func deliveredWins() async throws {
        try await withTestDatabase(appTables: true) { database in
            let gate = AnswerGate()
            let fixture = try await DeliveryFixture.make(database: database) { request in
                gate.hold(request.uri == "/accepting" ? 200 : 500)
            }
            try await fixture.addClient("accepting")
            try await fixture.addClient("failing")
            let (worker, sender) = fixture.startWorker(requestTimeout: .seconds(30))
            try await fixture.connectIntegration()
            // Both requests are at the receiver, held: the attempts are in flight.
            #expect(await eventually { fixture.receiver.received.count == 2 })
            let cancelled = try await database.withConnection { connection in
                (
                    try await Deliveries(connection).cancel(client: "accepting").deliveries,
                    try await Deliveries(connection).cancel(client: "failing").deliveries
                )
            }
            #expect(cancelled == (1, 1))
            gate.open()
            // Both attempts recorded, and no job left: the failed one is not retried.
            let settled = await eventually {
                let attempts = try? await database.count("SELECT count(*) FROM webhook_worker.delivery_attempts")
                let jobs = try? await database.count("SELECT count(*) FROM webhook_worker.jobs")
                return attempts == 2 && jobs == 0
            }
            try await stopAll(worker, sender, fixture)
            #expect(settled)
            let accepted = try #require(try await fixture.delivery(client: "accepting"))
            #expect(try accepted.decode("status", as: String.self) == "delivered")
            #expect(try accepted.decodeIfPresent("delivered_at", as: Date.self) != nil)
            let failed = try #require(try await fixture.delivery(client: "failing"))
            #expect(try failed.decode("status", as: String.self) == "cancelled")
            #expect(try failed.decodeIfPresent("delivered_at", as: Date.self) == nil)
            #expect(fixture.requests(to: "failing").count == 1)
        }
    }
}
