import Foundation
import JobQueue
import LibPQ
import Logging
import OTel
import ServiceLifecycle
@testable import TestSupport
import Testing
import TraceExport
import WebhookDelivery
import WebhookWorkerSchema

/// The exporter of `run` (TraceExport) sending OTLP/HTTP JSON to a collector stand-in on
/// 127.0.0.1, run as `run` runs it: a service whose graceful shutdown sends what is left.
struct TracedWorld {
    let collector: OTLPCollector
    let tracing: JobTracing
    let group: ServiceGroup
    let task: Task<Void, any Error>

    static func start() async throws -> TracedWorld {
        let collector = try await OTLPCollector.start()
        let backend = try #require(
            try TraceExport.make(
                environment: ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.tracesURL], logger: TestDatabase.logger
            ) { configuration in
                configuration.traces.otlpExporter.endpoint = collector.tracesURL
                configuration.traces.otlpExporter.`protocol` = .httpJSON
                configuration.traces.batchSpanProcessor.scheduleDelay = .milliseconds(50)
            })
        let group = ServiceGroup(services: [backend.service], logger: TestDatabase.logger)
        let task = Task { try await group.run() }
        return TracedWorld(collector: collector, tracing: JobTracing(backend.tracer), group: group, task: task)
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
        await collector.stop()
    }

    /// Waits until the collector has spans matching `condition`, and returns them.
    func spans(
        timeout: Duration = .seconds(20), where condition: @escaping ([CollectedSpan]) -> Bool
    ) async -> [CollectedSpan] {
        _ = await eventually(timeout: timeout) { condition(collector.spans) }
        return collector.spans
    }
}

/// A fresh W3C trace context: (traceparent, trace id, parent span id), sampled.
func webAppTrace() -> (traceparent: String, traceID: String, spanID: String) {
    let hex = { (count: Int) in (0..<count).map { _ in String("0123456789abcdef".randomElement()!) }.joined() }
    let traceID = "4bf9" + hex(28)
    let spanID = "00f0" + hex(12)
    return ("00-\(traceID)-\(spanID)-01", traceID, spanID)
}

@Suite("Traces: spans per attempt, the web app's trace continued, OTLP export", .timeLimit(.minutes(4)))
struct TracingTests {
    @Test("an integration.connected job continues the web app's trace through its deliveries to the receivers")
    func continuesTheWebAppTrace() async throws {
        try await withTestDatabase(appTables: true) { database in
            let world = try await TracedWorld.start()
            let fixture = try await DeliveryFixture.make(database: database)
            try await fixture.addClient("traced-a")
            try await fixture.addClient("traced-b", url: fixture.url("traced-b") + "?token=t0ps3cret")
            let (worker, sender) = fixture.startWorker { $0.tracing = world.tracing }
            let trace = webAppTrace()
            var job = try IntegrationConnectedPayload(integrationAccountID: "acct-1", userID: "user-1").job
            job.traceContext = trace.traceparent + " vendor=abc"
            let jobID = try #require(
                try await database.withConnection {
                    try await JobEnqueuer($0, schema: WebhookWorkerSchema.queue).enqueue(job)
                })

            #expect(await eventually { fixture.receiver.received.count == 2 })
            let spans = await world.spans { spans in
                spans.filter { $0.name == "webhook.deliver" && $0.attributes["job.outcome"] != nil }.count == 2
                    && spans.filter { $0.name == "POST" }.count == 2
                    && spans.contains { $0.name == "integration.connected" && $0.attributes["job.outcome"] != nil }
            }
            try await stopAll(worker, sender, fixture)
            try await world.stop()

            // The fan-out's attempt: a child of the web app's span, in its trace.
            let fanOut = try #require(spans.first { $0.name == "integration.connected" }, "\(spans)")
            #expect(fanOut.traceID == trace.traceID)
            #expect(fanOut.parentSpanID == trace.spanID)
            #expect(fanOut.kind == 5)
            #expect(fanOut.attributes["job.kind"] == "integration.connected")
            #expect(fanOut.attributes["job.id"] == "\(jobID)")
            #expect(fanOut.attributes["job.attempt"] == "1")
            #expect(fanOut.attributes["job.outcome"] == "succeeded")
            #expect(fanOut.serviceName == "webhook-worker")
            // Its statements are its children.
            let fanOutStatements = spans.filter { $0.parentSpanID == fanOut.spanID && $0.kind == 3 }
            #expect(Set(fanOutStatements.map(\.name)).isSuperset(of: ["integrationAccount", "record outcome"]))

            // Each delivery's attempt: in the same trace, a child of the fan-out's attempt.
            let deliveries = spans.filter { $0.name == "webhook.deliver" }
            #expect(deliveries.count == 2)
            for delivery in deliveries {
                #expect(delivery.traceID == trace.traceID)
                #expect(delivery.parentSpanID == fanOut.spanID)
                #expect(delivery.attributes["job.outcome"] == "succeeded")
                let children = spans.filter { $0.parentSpanID == delivery.spanID }
                #expect(
                    Set(children.map(\.name)).isSuperset(of: ["recheckDelivery", "POST", "record outcome"]),
                    "\(children)")
                let statement = try #require(children.first { $0.name == "recheckDelivery" })
                #expect(statement.attributes["db.system.name"] == "postgresql")
            }

            // The requests: semantic-convention attributes, the URL redacted as the logs have it.
            let requests = spans.filter { $0.name == "POST" }
            for request in requests {
                #expect(request.traceID == trace.traceID)
                #expect(request.kind == 3)
                #expect(request.attributes["http.request.method"] == "POST")
                #expect(request.attributes["http.response.status_code"] == "200")
                #expect(request.attributes["server.address"] == "127.0.0.1")
                #expect(request.attributes["server.port"] == "\(fixture.receiver.port)")
                #expect(request.attributes["error.type"] == nil)
            }
            let urls = Set(requests.compactMap { $0.attributes["url.full"] })
            #expect(urls == [fixture.url("traced-a"), fixture.url("traced-b") + "?***"], "\(urls)")
            #expect(!spans.contains { $0.attributes.values.contains { $0.contains("t0ps3cret") } })

            // The receivers got the request span's traceparent: the web app's trace id.
            for received in fixture.receiver.received {
                let header = try #require(received.header("traceparent"))
                let parts = header.split(separator: "-").map(String.init)
                #expect(parts.count == 4)
                #expect(parts[0] == "00" && parts[1] == trace.traceID && parts[3] == "01", "\(header)")
                #expect(requests.contains { $0.spanID == parts[2] }, "\(header)")
                #expect(received.header("tracestate") == "vendor=abc")
            }
        }
    }

    @Test("a failed request's span carries error.type and the response status, and the attempt says retried")
    func failedRequestSpan() async throws {
        try await withTestDatabase(appTables: true) { database in
            let world = try await TracedWorld.start()
            let fixture = try await DeliveryFixture.make(database: database) { _ in .status(503) }
            try await fixture.addClient("down")
            let (worker, sender) = fixture.startWorker(schedule: [.seconds(30)]) { $0.tracing = world.tracing }
            try await fixture.connectIntegration()
            let spans = await world.spans { spans in
                spans.contains { $0.name == "webhook.deliver" && $0.attributes["job.outcome"] != nil }
            }
            try await stopAll(worker, sender, fixture)
            try await world.stop()
            let request = try #require(spans.first { $0.name == "POST" }, "\(spans)")
            #expect(request.attributes["http.response.status_code"] == "503")
            #expect(request.attributes["error.type"] == "503")
            #expect(request.statusCode == 2)
            let attempt = try #require(spans.first { $0.name == "webhook.deliver" })
            #expect(attempt.attributes["job.outcome"] == "retried")
            #expect(attempt.statusCode == 2)
            // Without a trace_context, the fan-out started the trace.
            let fanOut = try #require(spans.first { $0.name == "integration.connected" })
            #expect(fanOut.parentSpanID.isEmpty)
            #expect(attempt.traceID == fanOut.traceID)
        }
    }

    @Test("a malformed trace_context is ignored: the job runs and its span starts a trace of its own")
    func malformedTraceContext() async throws {
        try await withTestDatabase { database in
            let world = try await TracedWorld.start()
            let trace = webAppTrace()
            let malformed = [
                "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "ff-" + trace.traceparent.dropFirst(3),
                trace.traceparent + " not a tracestate,=,", String(repeating: "0", count: 5000), "",
            ]
            for text in malformed + [trace.traceparent] {
                try await database.query(
                    "INSERT INTO webhook_worker.jobs (kind, trace_context) VALUES ('noop', $1)", [text])
            }
            let worker = RunningWorker(database, handlers: [NoopHandler()]) {
                $0.tracing = world.tracing
                $0.pollInterval = .milliseconds(50)
            }
            #expect(
                await eventually {
                    (try? await database.count(
                        "SELECT count(*) FROM webhook_worker.job_attempts WHERE outcome = 'succeeded'"))
                        == malformed.count + 1
                })
            let spans = await world.spans { $0.filter { $0.name == "noop" }.count == malformed.count + 1 }
            try await worker.stop()
            try await world.stop()
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 0)
            let noops = spans.filter { $0.name == "noop" }
            #expect(noops.count == malformed.count + 1)
            #expect(noops.filter { $0.parentSpanID.isEmpty }.count == malformed.count)
            let continued = try #require(noops.first { !$0.parentSpanID.isEmpty })
            #expect(continued.traceID == trace.traceID && continued.parentSpanID == trace.spanID)
            for span in noops {
                #expect(span.traceID.count == 32 && span.traceID != String(repeating: "0", count: 32))
            }
        }
    }

    @Test("with no endpoint nothing is exported, no traceparent is sent, and deliveries work")
    func noEndpoint() async throws {
        #expect(try TraceExport.make(environment: [:], logger: TestDatabase.logger) == nil)
        #expect(
            try TraceExport.make(
                environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_SDK_DISABLED": "true"],
                logger: TestDatabase.logger) == nil)
        #expect(
            try TraceExport.make(
                environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"],
                logger: TestDatabase.logger) == nil)
        try await withTestDatabase(appTables: true) { database in
            let collector = try await OTLPCollector.start()
            let fixture = try await DeliveryFixture.make(database: database)
            try await fixture.addClient("plain-a")
            try await fixture.addClient("plain-b")
            let (worker, sender) = fixture.startWorker()
            var job = try IntegrationConnectedPayload(integrationAccountID: "acct-1", userID: "user-1").job
            job.traceContext = webAppTrace().traceparent
            try await database.withConnection {
                _ = try await JobEnqueuer($0, schema: WebhookWorkerSchema.queue).enqueue(job)
            }
            #expect(
                await eventually {
                    (try? await database.count(
                        "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'delivered'")) == 2
                })
            try await stopAll(worker, sender, fixture)
            await collector.stop()
            #expect(fixture.receiver.received.count == 2)
            #expect(fixture.receiver.received.allSatisfy { $0.header("traceparent") == nil })
            #expect(collector.requestCount == 0)
        }
    }

    @Test("the fan-out copies trace_context to its deliveries' jobs: as stored when off, its own span's when on")
    func fanOutCopiesTraceContext() async throws {
        for traced in [false, true] {
            try await withTestDatabase(appTables: true) { database in
                var world: TracedWorld?
                if traced { world = try await TracedWorld.start() }
                let fixture = try await DeliveryFixture.make(database: database)
                try await fixture.addClient("copy-a")
                try await fixture.addClient("copy-b")
                let configuration = WebhookDeliveryConfiguration(allowHTTP: true, allowPrivateNetworks: true)
                // Only the fan-out runs: its webhook.deliver jobs stay in the queue to be read.
                let worker = RunningWorker(
                    database, handlers: [IntegrationConnectedHandler(configuration: configuration)]
                ) {
                    $0.pollInterval = .milliseconds(50)
                    if let world { $0.tracing = world.tracing }
                }
                let trace = webAppTrace()
                let stored = trace.traceparent + " vendor=xyz"
                var job = try IntegrationConnectedPayload(integrationAccountID: "acct-1", userID: "user-1").job
                job.traceContext = stored
                try await database.withConnection {
                    _ = try await JobEnqueuer($0, schema: WebhookWorkerSchema.queue).enqueue(job)
                }
                let copied = "SELECT trace_context FROM webhook_worker.jobs WHERE kind = 'webhook.deliver'"
                #expect(await eventually { (try? await database.query(copied).count) == 2 })
                var spans: [CollectedSpan] = []
                if let world { spans = await world.spans { $0.contains { $0.name == "integration.connected" } } }
                try await worker.stop()
                try await world?.stop()
                await fixture.receiver.stop()
                let values = try await database.query(copied).rows.map {
                    try $0.decodeIfPresent("trace_context", as: String.self)
                }
                #expect(values.count == 2)
                if traced {
                    let fanOut = try #require(spans.first { $0.name == "integration.connected" })
                    #expect(
                        values.allSatisfy { $0 == "00-\(trace.traceID)-\(fanOut.spanID)-01 vendor=xyz" }, "\(values)")
                } else {
                    #expect(values.allSatisfy { $0 == stored }, "\(values)")
                }
            }
        }
    }

}
