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

/// Exporting from `run`, the enqueue() function's trace_context, and the settings that decide
/// what is traced and exported.
extension TracingTests {
    @Test("run exports to the endpoint of the OTEL_* variables; the spans still batched go out on SIGTERM")
    func runExportsOnShutdown() async throws {
        try await withTestDatabase { database in
            let collector = try await OTLPCollector.start()
            let trace = webAppTrace()
            let environment = [
                "DATABASE_URL": database.conninfo,
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(collector.server.port)",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_SERVICE_NAME": "traced-test",
                "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cr3t-key",
                // A minute: the span can only arrive through the flush at shutdown.
                "OTEL_BSP_SCHEDULE_DELAY": "60000",
            ]
            let (enqueued, enqueueStatus) = try await CommandLineTests.run(
                ["enqueue", "noop", "--traceparent", trace.traceparent], environment: environment)
            #expect(enqueueStatus == 0, "\(enqueued)")
            let worker = try startWorker(
                ["run", "--log-level", "info", "--poll-interval", "200ms"], environment: environment)
            defer { worker.signal(SIGKILL) }
            let ran = await eventually(timeout: .seconds(60)) {
                (try? await database.count(
                    "SELECT count(*) FROM webhook_worker.job_attempts WHERE kind = 'noop' AND outcome = 'succeeded'"))
                    == 1
            }
            #expect(ran)
            #expect(collector.spans.isEmpty)
            worker.signal(SIGTERM)
            let status = await worker.wait(timeout: .seconds(60))
            let output = worker.output
            #expect(status == 0, "\(output)")
            await collector.stop()
            let span = try #require(collector.spans.first { $0.name == "noop" }, "\(collector.spans) \(output)")
            #expect(span.traceID == trace.traceID && span.parentSpanID == trace.spanID)
            #expect(span.serviceName == "traced-test")
            #expect(span.attributes["job.outcome"] == "succeeded")
            // The collector got the headers of OTEL_EXPORTER_OTLP_HEADERS; the logs never show them.
            #expect(collector.server.received.first?.header("x-api-key") == "s3cr3t-key")
            // swift-otel logs the variable it read (as the traces one) with its value hidden.
            #expect(
                output.contains("OTEL_EXPORTER_OTLP_TRACES_HEADERS") && output.contains("(not shown)"), "\(output)")
            #expect(!output.contains("s3cr3t"), "\(output)")
            #expect(output.contains("traces=otlp"), "\(output)")
        }
    }

    @Test("enqueue() takes trace_context as its last parameter; calls without it are unchanged")
    func enqueueFunction() async throws {
        try await withTestDatabase { database in
            let trace = webAppTrace()
            let withContext = try #require(
                try await database.scalar(
                    "SELECT webhook_worker.enqueue('noop', trace_context => $1)", [trace.traceparent], as: Int64.self))
            let positional = try #require(
                try await database.scalar(
                    "SELECT webhook_worker.enqueue('noop', '{}', now(), 0, NULL, NULL, 'key-1')", as: Int64.self))
            #expect(
                try await database.scalar(
                    "SELECT trace_context FROM webhook_worker.jobs WHERE id = $1", [withContext], as: String.self)
                    == trace.traceparent)
            #expect(
                try await database.scalar(
                    "SELECT concurrency_key FROM webhook_worker.jobs WHERE id = $1 AND trace_context IS NULL",
                    [positional], as: String.self) == "key-1")
        }
    }

    @Test("trace_context values: a traceparent, optionally a tracestate after whitespace; anything else refused")
    func storedTraceContext() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        #expect(StoredTraceContext.isValid(parent))
        #expect(StoredTraceContext.isValid(" " + parent + "  rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"))
        #expect(!StoredTraceContext.isValid(parent.uppercased()))
        #expect(!StoredTraceContext.isValid(String(parent.dropLast())))
        #expect(!StoredTraceContext.isValid("01" + parent.dropFirst(2)))
        #expect(!StoredTraceContext.isValid(parent.replacingOccurrences(of: "-", with: "_")))
        #expect(!StoredTraceContext.isValid(parent + " " + String(repeating: "a=b,", count: 300)))
        if case .success(let headers) = StoredTraceContext.parse(parent + "\trojo=1") {
            #expect(headers.map(\.0) == ["traceparent", "tracestate"])
            #expect(headers.map(\.1) == [parent, "rojo=1"])
        } else {
            Issue.record("a traceparent with a tracestate was refused")
        }
    }

    @Test("OTEL_* values the exporter cannot honour are refused with the variable's name")
    func exporterSettings() {
        let endpoint = ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"]
        #expect(TraceExport.isEnabled(endpoint))
        #expect(TraceExport.isEnabled(["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"]))
        #expect(!TraceExport.isEnabled(["OTEL_EXPORTER_OTLP_ENDPOINT": ""]))
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/xml"),
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"), ("OTEL_PROPAGATORS", "tracecontext,baggage"),
            ("OTEL_TRACES_EXPORTER", "zipkin"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/v1/traces"),
        ] {
            let environment = endpoint.merging([name: value]) { $1 }
            #expect(throws: TraceExport.SettingError.self) { try TraceExport.validate(environment) }
            do {
                try TraceExport.validate(environment)
            } catch {
                #expect("\(error)".contains(name), "\(error)")
            }
        }
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_PROPAGATORS", "tracecontext"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://otel.example.com/v1/traces"),
        ] {
            #expect(throws: Never.self) { try TraceExport.validate(endpoint.merging([name: value]) { $1 }) }
        }
        let ratio = endpoint.merging(["OTEL_TRACES_SAMPLER": "parentbased_traceidratio"]) { $1 }
        #expect(throws: Never.self) {
            try TraceExport.validate(ratio.merging(["OTEL_TRACES_SAMPLER_ARG": "0.25"]) { $1 })
        }
        #expect(throws: TraceExport.SettingError.self) {
            try TraceExport.validate(ratio.merging(["OTEL_TRACES_SAMPLER_ARG": "1.5"]) { $1 })
        }
    }
}
