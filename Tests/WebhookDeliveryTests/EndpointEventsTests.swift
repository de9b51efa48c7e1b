import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookWorkerSchema

/// The operational events of `webhook_worker.endpoint_events`: recorded by the tables' triggers
/// whoever changes an endpoint or a delivery, announced on their channel, pruned by age.
@Suite("Endpoint events", .timeLimit(.minutes(4)))
struct EndpointEventsTests {
    /// The circuit's functions as the worker calls them: 2 failures open it, 3 days disable it.
    static func record(
        _ database: TestDatabase, _ key: String, success: Bool, disableAfter: String = "3 days"
    )
        async throws -> String?
    {
        try await database.scalar(
            """
            SELECT webhook_worker.endpoint_record($1, $2, $3, 2, '1 minute'::interval, '1 hour'::interval, \
            $4::interval)
            """, [key, success, success ? "" : "HTTP 500", disableAfter], as: String.self)
    }

    /// Lets the open circuit's probe go now: open becomes half_open.
    static func probe(_ database: TestDatabase, _ key: String) async throws -> String? {
        try await database.query(
            "UPDATE webhook_worker.endpoints SET next_probe_at = now() - interval '1 second' WHERE key = $1", [key])
        return try await database.scalar(
            "SELECT decision FROM webhook_worker.endpoint_permit($1, '1 minute'::interval)", [key], as: String.self)
    }

    @Test("circuit, disable and enable changes record one event each, announced on the channel")
    func circuitChanges() async throws {
        try await withTestDatabase { database in
            let listener = PQListener(
                conninfo: database.conninfo, channels: [EndpointEvents.channel], applicationName: "events-test-listen",
                logger: TestDatabase.logger)
            listener.start()
            var notifications = listener.events.makeAsyncIterator()
            #expect(await notifications.next() == .connected(reconnected: false))
            let key = "client:c1"

            #expect(try await Self.record(database, key, success: false) == "closed")
            #expect(try await Self.record(database, key, success: false) == "open")  // circuit_opened
            #expect(try await Self.probe(database, key) == "probe")
            #expect(try await Self.record(database, key, success: false) == "open")  // a failed probe: no event
            #expect(try await Self.probe(database, key) == "probe")
            #expect(try await Self.record(database, key, success: true) == "closed")  // circuit_recovered
            try await database.withConnection { connection in
                let endpoints = Endpoints(connection)
                try await endpoints.setEnabled(key: key, false, by: "operator (alice)")  // endpoint_disabled
                try await endpoints.setEnabled(key: key, true, by: "operator (alice)")  // endpoint_enabled
                try await endpoints.setEnabled(key: key, true, by: "operator (alice)")  // already closed: none
            }
            // No success for longer than disable-after: disabled automatically.
            #expect(try await Self.record(database, key, success: false, disableAfter: "0 seconds") == "disabled")

            let events = try await database.withConnection { connection in
                try await EndpointEvents(connection).recent(client: "c1")
            }.reversed()
            #expect(
                events.map(\.kind) == [
                    .circuitOpened, .circuitRecovered, .endpointDisabled, .endpointEnabled, .endpointDisabled,
                ])
            let list = Array(events)
            #expect(list.allSatisfy { $0.oauthClientID == "c1" && $0.deliveryID == nil })
            #expect(list[0].reason == "HTTP 500")
            #expect(list[0].failingSince != nil)
            #expect(list[1].reason == "a delivery succeeded")
            #expect(list[2].reason == "operator (alice)")
            #expect(list[3].reason == "enabled by an operator")
            #expect(list[4].reason?.hasPrefix("automatic: no success since") == true, "\(list[4])")

            var announced: [String] = []
            while announced.count < list.count, let next = await notifications.next() {
                guard case .notification(let channel, let payload) = next else { continue }
                #expect(channel == EndpointEvents.channel)
                let object = try #require(
                    try JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any], "\(payload)")
                #expect(object["oauth_client_id"] as? String == "c1")
                announced.append(try #require(object["event"] as? String))
            }
            await listener.stop()
            #expect(announced == list.map(\.event))
        }
    }

    @Test("a delivery that is dead-lettered records delivery_failed with its error, once")
    func deliveryFailed() async throws {
        try await withTestDatabase(appTables: true) { database in
            // A receiver that answers 410 Gone: the first attempt dead-letters the delivery.
            let fixture = try await DeliveryFixture.make(database: database) { _ in .status(410) }
            try await fixture.addClient("c1")
            try await fixture.connectIntegration()
            let (worker, sender) = fixture.startWorker()
            #expect(
                await eventually {
                    (try? await database.count(
                        "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'failed'")) == 1
                })
            try await stopAll(worker, sender, fixture)
            let id: UUID = try #require(
                try await database.scalar("SELECT delivery_id FROM webhook_worker.webhook_deliveries"))
            // Touching the failed row again records nothing more.
            try await database.query(
                "UPDATE webhook_worker.webhook_deliveries SET status = 'failed', updated_at = now()")

            let events = try await database.withConnection { connection in
                try await EndpointEvents(connection).recent()
            }
            #expect(events.count == 1, "\(events)")
            let event = try #require(events.first)
            #expect(event.kind == .deliveryFailed)
            #expect(event.oauthClientID == "c1")
            #expect(event.deliveryID == id.uuidString.lowercased())
            #expect(event.reason?.contains("410") == true, "\(event)")
        }
    }

    @Test("prune deletes the events recorded before the cutoff, in batches")
    func prune() async throws {
        try await withTestDatabase { database in
            try await database.script(
                """
                INSERT INTO webhook_worker.endpoint_events (oauth_client_id, event, created_at)
                SELECT 'c' || i, 'endpoint_enabled', now() - interval '40 days' FROM generate_series(1, 5) i;
                INSERT INTO webhook_worker.endpoint_events (oauth_client_id, event) VALUES ('c9', 'circuit_opened');
                """)
            let deleted = try await database.withConnection { connection in
                try await EndpointEvents(connection).prune(
                    before: Date().addingTimeInterval(-30 * 86_400), batchSize: 2)
            }
            #expect(deleted == 5)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.endpoint_events") == 1)
        }
    }
}
