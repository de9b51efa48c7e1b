import Foundation
import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookReceiver

/// The relay that POSTs `endpoint_events` to the web app (`run --operational-url`): signed, once
/// per event, retried with a growing wait, shared by replicas without posting an event twice.
@Suite("Operational webhooks", .timeLimit(.minutes(4)))
struct OperationalWebhookTests {
    static let secret = "whsec_b3BlcmF0aW9uYWwtc2VjcmV0LWZvci10ZXN0cw"

    static func configuration(_ receiver: WebhookReceiverServer) -> OperationalWebhooks.Configuration {
        var configuration = OperationalWebhooks.Configuration(
            url: "http://127.0.0.1:\(receiver.port)/events", secret: secret, userAgent: "ops-test/1",
            requestTimeout: .seconds(10), disableAfter: .seconds(3 * 86_400))
        configuration.pollInterval = .milliseconds(50)
        configuration.firstRetryWait = .milliseconds(50)
        configuration.maxRetryWait = .milliseconds(200)
        return configuration
    }

    /// Records an event as the triggers do, and returns its id.
    @discardableResult
    static func insertEvent(
        _ database: TestDatabase, client: String, event: String, reason: String? = nil, deliveryID: String? = nil,
        failingSince: String? = nil
    ) async throws -> Int64 {
        try #require(
            try await database.scalar(
                """
                INSERT INTO webhook_worker.endpoint_events (oauth_client_id, event, reason, delivery_id, failing_since)
                VALUES ($1, $2, $3, $4::uuid, $5::timestamptz) RETURNING id
                """, [client, event, reason, deliveryID, failingSince], as: Int64.self))
    }

    static func json(_ body: [UInt8]) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any])
    }

    @Test("each event is POSTed once, signed, with its id, type and data; a second pass finds nothing")
    func postsOnce() async throws {
        try await withTestDatabase { database in
            let receiver = try await WebhookReceiverServer.start { _ in .status(204, body: "") }
            let relay = OperationalWebhooks(configuration: Self.configuration(receiver))
            defer { Task { try? await relay.shutdown() } }
            let opened = try await Self.insertEvent(
                database, client: "c1", event: "circuit_opened", reason: "HTTP 500",
                failingSince: "2026-12-01T10:00:00Z")
            let failed = try await Self.insertEvent(
                database, client: "c2", event: "delivery_failed", reason: "HTTP 410",
                deliveryID: "0190a4b2-0000-7000-8000-000000000001")
            try await Self.insertEvent(
                database, client: "c1", event: "endpoint_enabled", reason: "enabled by an operator")

            let pass = try await database.withConnection {
                try await relay.pass($0, logger: TestDatabase.logger)
            }
            #expect(pass == OperationalWebhooks.Pass(taken: 3, posted: 3, failed: 0))
            let received = receiver.received
            #expect(received.count == 3)
            for request in received {
                let id = try #require(request.header("webhook-id"))
                let timestamp = try #require(request.header("webhook-timestamp"))
                let signature = try #require(request.header("webhook-signature"))
                #expect(
                    WebhookSignature.verifyStandard(
                        signature, secret: Self.secret, id: id, timestamp: timestamp, body: request.body))
                #expect(request.header("X-Webhook-Delivery") == id && request.uri == "/events")
                #expect(request.header("User-Agent") == "ops-test/1")
                let body = try Self.json(request.body)
                #expect(body["id"] as? String == id && request.header("X-Webhook-Event") == body["type"] as? String)
            }
            let byID = Dictionary(
                uniqueKeysWithValues: try received.map { (try #require($0.header("webhook-id")), $0) })
            let openedBody = try Self.json(try #require(byID[OperationalWebhooks.webhookID(opened)]).body)
            #expect(openedBody["type"] as? String == "endpoint.circuit_opened")
            let openedData = try #require(openedBody["data"] as? [String: Any])
            #expect(openedData["oauth_client_id"] as? String == "c1" && openedData["reason"] as? String == "HTTP 500")
            #expect(openedData["failing_since"] as? String == "2026-12-01T10:00:00.000Z")
            #expect(openedData["disabled_at_the_latest"] as? String == "2026-12-04T10:00:00.000Z")
            #expect(openedData["delivery_id"] is NSNull)
            let failedBody = try Self.json(try #require(byID[OperationalWebhooks.webhookID(failed)]).body)
            #expect(failedBody["type"] as? String == "endpoint.delivery_failed")
            let failedData = try #require(failedBody["data"] as? [String: Any])
            #expect(failedData["delivery_id"] as? String == "0190a4b2-0000-7000-8000-000000000001")
            #expect(failedData["disabled_at_the_latest"] == nil)

            #expect(
                try await database.count(
                    """
                    SELECT count(*) FROM webhook_worker.endpoint_events
                    WHERE posted_at IS NOT NULL AND post_attempts = 1 AND post_error IS NULL
                    """) == 3)
            let again = try await database.withConnection { try await relay.pass($0, logger: TestDatabase.logger) }
            #expect(again == OperationalWebhooks.Pass())
            #expect(receiver.received.count == 3)
            await receiver.stop()
        }
    }

    @Test("a failing web app: the event waits its growing retry time (or Retry-After), then is posted")
    func retries() async throws {
        try await withTestDatabase { database in
            let answers = Mutex<[ReceiverResponse]>([
                .status(500, body: "down"), .status(503, headers: [("Retry-After", "120")], body: ""),
            ])
            let receiver = try await WebhookReceiverServer.start { _ in
                answers.withLock { $0.isEmpty ? .status(200, body: "ok") : $0.removeFirst() }
            }
            var configuration = Self.configuration(receiver)
            configuration.firstRetryWait = .seconds(10)
            configuration.maxRetryWait = .seconds(600)
            let relay = OperationalWebhooks(configuration: configuration)
            defer { Task { try? await relay.shutdown() } }
            let id = try await Self.insertEvent(database, client: "c1", event: "endpoint_disabled", reason: "alice")
            func pass() async throws -> OperationalWebhooks.Pass {
                try await database.withConnection { try await relay.pass($0, logger: TestDatabase.logger) }
            }
            func waitSeconds() async throws -> Double {
                try #require(
                    try await database.scalar(
                        """
                        SELECT extract(epoch FROM post_after - now())::float8 FROM webhook_worker.endpoint_events
                        WHERE id = $1
                        """, [id], as: Double.self))
            }
            func due() async throws {
                try await database.query(
                    "UPDATE webhook_worker.endpoint_events SET post_after = now() - interval '1 ms' WHERE id = $1", [id]
                )
            }

            #expect(try await pass() == OperationalWebhooks.Pass(taken: 1, posted: 0, failed: 1))
            let first = try await waitSeconds()
            #expect(first > 8 && first <= 10, "\(first)")
            #expect(
                try await database.scalar(
                    "SELECT post_error FROM webhook_worker.endpoint_events WHERE id = $1", [id], as: String.self)
                    == "HTTP 500")
            #expect(try await pass() == OperationalWebhooks.Pass(), "not due yet")
            try await due()
            #expect(try await pass() == OperationalWebhooks.Pass(taken: 1, posted: 0, failed: 1))
            // The second wait doubles to 20 s, but the web app asked for 120.
            let second = try await waitSeconds()
            #expect(second > 118 && second <= 120, "\(second)")
            try await due()
            #expect(try await pass() == OperationalWebhooks.Pass(taken: 1, posted: 1, failed: 0))
            #expect(
                try await database.count(
                    """
                    SELECT count(*) FROM webhook_worker.endpoint_events
                    WHERE id = $1 AND posted_at IS NOT NULL AND post_attempts = 3 AND post_error IS NULL
                    """, [id]) == 1)
            #expect(
                Set(receiver.received.compactMap { $0.header("webhook-id") }) == [OperationalWebhooks.webhookID(id)])
            await receiver.stop()
        }
    }

    @Test("events older than the window, and those recorded before the relay existed, are not posted")
    func oldEventsStay() async throws {
        try await withTestDatabase { database in
            let receiver = try await WebhookReceiverServer.start { _ in .ok }
            let relay = OperationalWebhooks(configuration: Self.configuration(receiver))
            defer { Task { try? await relay.shutdown() } }
            let old = try await Self.insertEvent(database, client: "c1", event: "circuit_recovered")
            try await database.query(
                "UPDATE webhook_worker.endpoint_events SET created_at = now() - interval '25 hours' WHERE id = $1",
                [old])
            let fresh = try await Self.insertEvent(database, client: "c1", event: "circuit_recovered")
            let pass = try await database.withConnection { try await relay.pass($0, logger: TestDatabase.logger) }
            #expect(pass.taken == 1 && pass.posted == 1)
            #expect(receiver.received.map { $0.header("webhook-id") } == [OperationalWebhooks.webhookID(fresh)])
            await receiver.stop()
        }
    }

    @Test("the retry wait doubles from its first step up to its cap; a longer Retry-After wins within the cap")
    func retryWaits() {
        var configuration = OperationalWebhooks.Configuration(
            url: "http://127.0.0.1:1/", secret: nil, userAgent: "x", requestTimeout: .seconds(1), disableAfter: nil)
        configuration.firstRetryWait = .seconds(1)
        configuration.maxRetryWait = .seconds(300)
        #expect(
            (1...10).map { configuration.retryWait(afterAttempt: $0) }
                == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300].map {
                    Duration.seconds($0)
                })
        #expect(configuration.retryWait(afterAttempt: 1000) == .seconds(300))
        #expect(configuration.retryWait(afterAttempt: 1, retryAfter: .seconds(90)) == .seconds(90))
        #expect(configuration.retryWait(afterAttempt: 1, retryAfter: .seconds(9000)) == .seconds(300))
    }

    /// Three relays (three replicas) run side by side while events arrive and the web app fails
    /// a random share of the POSTs, chosen by a seed: every event ends posted, and none is ever
    /// answered 2xx twice.
    @Test("three relays share the events: each posted exactly once, whatever fails")
    func relaysShare() async throws {
        let seed = UInt64.random(in: 1...UInt64.max)
        try await withTestDatabase { database in
            let random = Mutex(SeededGenerator(seed: seed))
            let taken = Mutex<[String: Int]>([:])
            let receiver = try await WebhookReceiverServer.start { request in
                if random.withLock({ $0.next() % 4 == 0 }) { return .status(500, body: "flaky") }
                let id = request.header("webhook-id") ?? "?"
                taken.withLock { $0[id, default: 0] += 1 }
                return .status(200, body: "ok")
            }
            let relays = (0..<3).map { _ in OperationalWebhooks(configuration: Self.configuration(receiver)) }
            let pool = database.pool(size: 6)
            let events = 150
            try await withThrowingTaskGroup(of: Void.self) { group in
                for relay in relays {
                    group.addTask {
                        await relay.run(database: pool, listenConninfo: database.conninfo, logger: TestDatabase.logger)
                    }
                }
                for index in 0..<events {
                    try await Self.insertEvent(database, client: "c\(index % 7)", event: "circuit_recovered")
                }
                let done = await eventually(timeout: .seconds(60)) {
                    (try? await database.count(
                        "SELECT count(*) FROM webhook_worker.endpoint_events WHERE posted_at IS NOT NULL")) == events
                }
                #expect(done, "seed \(seed)")
                group.cancelAll()
            }
            let counts = taken.withLock { $0 }
            #expect(counts.count == events, "seed \(seed)")
            #expect(counts.values.allSatisfy { $0 == 1 }, "seed \(seed): \(counts.filter { $0.value > 1 })")
            for relay in relays { try? await relay.shutdown() }
            await pool.close()
            await receiver.stop()
        }
    }
}
