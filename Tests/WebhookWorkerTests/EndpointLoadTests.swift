import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery

/// Each endpoint's load as operators see it (issue 22, point 5): the limit the claim holds it to,
/// its deliveries in flight and waiting, and the pause it asked for, in `/metrics` for the
/// busiest endpoints, in `endpoints show` and on the console's endpoints page.
@Suite("Endpoint load", .timeLimit(.minutes(4)))
struct EndpointLoadTests {
    @Test(
        """
        run exports the busiest endpoints' limit, in flight, waiting and pause; endpoints show and the endpoints \
        page read the same; an endpoint that goes quiet leaves /metrics
        """
    )
    func loadIsShown() async throws {
        try await withTestDatabase(appTables: true) { database in
            let gate = AnswerGate()
            let fixture = try await DeliveryFixture.make(database: database) { _ in gate.hold(204) }
            try await fixture.addClient("held")
            try await fixture.addClient("paused")
            // An hour's pause asked for by "paused": its deliveries wait it out, unsent.
            try await database.query("SELECT webhook_worker.endpoint_pause('client:paused', interval '1 hour')")
            for _ in 0..<7 { try await fixture.connectIntegration() }
            let port = try freeLoopbackPort()
            let worker = try startWorker(
                [
                    "run", "--allow-http", "--allow-private-networks", "--poll-interval", "200ms",
                    "--catch-up-interval", "off", "--http-port", "\(port)", "--http-host", "127.0.0.1",
                    // Held requests must not time out while the test looks at them.
                    "--request-timeout", "150s", "--lease", "180s",
                ],
                environment: ["DATABASE_URL": database.conninfo])
            defer { worker.signal(SIGKILL) }

            // "held" answers nothing yet: 4 in flight (the default limit), 3 waiting.
            let sampled = await eventually {
                let metrics = await scrapeMetrics(port: port)
                return gauge(metrics, "webhook_worker_endpoint_in_flight", "held") == 4
                    && gauge(metrics, "webhook_worker_endpoint_waiting", "held") == 3
                    && gauge(metrics, "webhook_worker_endpoint_limit", "held") == 4
                    && gauge(metrics, "webhook_worker_endpoint_paused", "paused") == 1
            }
            let metrics = await scrapeMetrics(port: port)
            #expect(sampled, "\(metrics.split(separator: "\n").filter { $0.contains("endpoint_") })")
            let throttled = gauge(metrics, "webhook_worker_endpoint_throttled_seconds", "paused")
            #expect(throttled.map { (3_599...3_600).contains($0) } == true, "\(String(describing: throttled))")
            #expect(fixture.receiver.received.count == 4, "nothing is sent to the paused endpoint")

            // An operator's limit is the limit in force: in /metrics, endpoints show and the page.
            let (output, status) = try await runWorker(
                ["endpoints", "set", "held", "--max-in-flight", "2"], environment: ["DATABASE_URL": database.conninfo])
            #expect(status == 0, "\(output)")
            #expect(
                await eventually {
                    gauge(await scrapeMetrics(port: port), "webhook_worker_endpoint_limit", "held") == 2
                })
            let (shown, showStatus) = try await runWorker(
                ["endpoints", "show", "held", "--json"], environment: ["DATABASE_URL": database.conninfo])
            #expect(showStatus == 0, "\(shown)")
            let health = try #require(try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [String: Any])
            #expect(health["limit"] as? Int == 2 && health["in_flight"] as? Int == 4, "\(shown)")
            #expect(health["waiting"] as? Int == 3, "\(shown)")
            let overview = try await database.withConnection { try await Endpoints($0).overview() }
            let held = try #require(overview.first { $0.oauthClientID == "held" })
            #expect(held.load == EndpointLoad(limit: 2, inFlight: 4, waiting: 3))
            let paused = try #require(overview.first { $0.oauthClientID == "paused" })
            #expect(paused.load.pausedUntil != nil && paused.load.throttledSeconds >= 3_599)
            #expect(paused.load.inFlight == 0)

            // Answered, "held" has nothing left: its series go, "paused" (still paused) stays.
            gate.open()
            #expect(
                await eventually {
                    let metrics = await scrapeMetrics(port: port)
                    return !metrics.contains(#"webhook_worker_endpoint_in_flight{endpoint="held"}"#)
                        && gauge(metrics, "webhook_worker_endpoint_paused", "paused") == 1
                })
            #expect(
                await eventually {
                    (try? await database.count(
                        "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'delivered'")) == 7
                })
            worker.signal(SIGTERM)
            #expect(await worker.wait(timeout: .seconds(60)) == 0, "\(worker.output)")
            await fixture.receiver.stop()
        }
    }

    @Test("an endpoint's circuit gauge: 3 while disabled, 0 for one sample once enabled, then gone from /metrics")
    func circuitGaugeGoes() async throws {
        try await withTestDatabase(appTables: true) { database in
            let port = try freeLoopbackPort()
            let worker = try startWorker(
                [
                    "run", "--poll-interval", "200ms", "--catch-up-interval", "off", "--http-port", "\(port)",
                    "--http-host", "127.0.0.1",
                ],
                environment: ["DATABASE_URL": database.conninfo])
            defer { worker.signal(SIGKILL) }
            let name = "webhook_worker_endpoint_circuit_state"
            try await database.query("SELECT webhook_worker.set_endpoint_enabled('client:c7', false, 'test')")
            #expect(await eventually { gauge(await scrapeMetrics(port: port), name, "c7") == 3 })
            try await database.query("SELECT webhook_worker.set_endpoint_enabled('client:c7', true, 'test')")
            #expect(await eventually { gauge(await scrapeMetrics(port: port), name, "c7") == 0 })
            #expect(
                await eventually {
                    let metrics = await scrapeMetrics(port: port)
                    return metrics.contains("webhook_worker_build_info") && gauge(metrics, name, "c7") == nil
                })
            worker.signal(SIGTERM)
            #expect(await worker.wait(timeout: .seconds(60)) == 0, "\(worker.output)")
        }
    }

    /// A gauge's value for one endpoint in a `/metrics` text, or nil when it has no such series.
    func gauge(_ metrics: String, _ name: String, _ endpoint: String) -> Double? {
        let prefix = "\(name){endpoint=\"\(endpoint)\"} "
        return metrics.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap {
            Double($0.dropFirst(prefix.count))
        }
    }
}
