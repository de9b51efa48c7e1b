import Foundation
import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing
@testable import WebhookDelivery
import WebhookReceiver

/// FIFO endpoints (``EndpointOrdering``): through two real workers to a loopback receiver, one
/// delivery in flight at a time, in creation order, a failing one holding the line.
@Suite("FIFO endpoints", .timeLimit(.minutes(4)))
struct FIFOEndpointTests {
    /// The delivery ids of the requests received so far, in order.
    final class Arrivals: Sendable {
        private let ids = Mutex<[String]>([])
        /// Records `id`; returns every id so far and the distinct ones in order of first arrival.
        func record(_ id: String) -> (all: [String], distinct: [String]) {
            ids.withLock { ids in
                ids.append(id)
                return (ids, ids.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } })
            }
        }
    }

    @Test("fifo or none, in any case; nothing else")
    func parsesOrdering() {
        #expect(EndpointOrdering(text: "fifo") == .fifo)
        #expect(EndpointOrdering(text: " FIFO ") == .fifo)
        #expect(EndpointOrdering(text: "none") == EndpointOrdering.none)
        #expect(EndpointOrdering(text: "lifo") == nil)
        #expect(EndpointOrdering(text: "") == nil)
    }

    @Test(
        """
        two replicas send a FIFO endpoint's deliveries one at a time in creation order: the first fails twice and \
        holds the others, the third is refused with 410 and dead-lettered, and the rest follow
        """
    )
    func inOrderAcrossReplicas() async throws {
        try await withTestDatabase(appTables: true) { database in
            // Per delivery id, the answers given so far; the first delivery to arrive gets 500
            // twice, the third to arrive gets 410, every other one 200.
            let arrivals = Arrivals()
            let fixture = try await DeliveryFixture.make(database: database) { request in
                let id = request.header("X-Webhook-Delivery") ?? ""
                let (all, distinct) = arrivals.record(id)
                if id == distinct[0] && all.count <= 2 { return .delay(.milliseconds(20), then: .status(500)) }
                if distinct.count >= 3 && id == distinct[2] { return .status(410) }
                return .delay(.milliseconds(20), then: .ok)
            }
            try await fixture.addClient("fifo")
            let connection = try await database.connect()
            #expect(try await Endpoints(connection).setOrdering(key: "client:fifo", .fifo) == EndpointOrdering.none)
            #expect(try await Endpoints(connection).ordering(key: "client:fifo") == .fifo)
            for _ in 0..<6 { try await fixture.connectIntegration() }
            let first = fixture.startWorker()
            let second = fixture.startWorker()
            let done = await eventually(timeout: .seconds(60)) {
                (try? await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status IN ('delivered', 'failed')"
                )) == 6
            }
            try await first.0.stop()
            try await first.1.shutdown()
            try await stopAll(second.0, second.1, fixture)
            await connection.close()
            #expect(done)

            // Creation order: the deliveries' jobs' ids (each delivery has one job).
            let created = try await database.query(
                """
                SELECT delivery_id::text AS id FROM webhook_worker.delivery_attempts
                GROUP BY delivery_id ORDER BY min(job_id)
                """
            ).rows.map { try $0.decode("id", as: String.self) }
            let received = fixture.requests(to: "fifo").compactMap { $0.header("X-Webhook-Delivery") }
            #expect(created.count == 6)
            var expected = [created[0], created[0], created[0]]
            expected += created.dropFirst()
            #expect(received == expected, "requests arrived out of creation order")
            let failed = try await database.count(
                "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'failed' "
                    + "AND delivery_id::text = $1",
                [created[2]])
            #expect(failed == 1, "the delivery refused with 410 was dead-lettered and let the next go")
            // Never two in flight: an attempt is recorded (attempted_at) after its request ended, and
            // each request started (its attempted_at less its duration) after the previous one was
            // recorded (1 ms for the rounding of duration_ms).
            let overlaps = try await database.count(
                """
                SELECT count(*) FROM webhook_worker.delivery_attempts a JOIN webhook_worker.delivery_attempts b
                ON a.attempted_at < b.attempted_at
                   AND b.attempted_at - b.duration_ms * interval '1 millisecond'
                       < a.attempted_at - interval '1 millisecond'
                """)
            #expect(overlaps == 0, "two attempts to the FIFO endpoint overlapped")
        }
    }
}
