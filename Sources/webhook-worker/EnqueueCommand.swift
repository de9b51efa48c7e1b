import ArgumentParser
import Foundation
import JobQueue
import LibPQ
import WebhookDelivery
import WebhookWorkerSchema

struct EnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Insert a job as the web app does.",
        subcommands: [IntegrationConnected.self, Noop.self])

    struct IntegrationConnected: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "integration-connected",
            abstract: "Enqueue an integration.connected event for an integration account and user.")

        @Option(help: "The IntegrationAccount id.") var account: String
        @Option(help: "The User id.") var user: String
        @OptionGroup var trace: TraceOptions
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            var job = try IntegrationConnectedPayload(integrationAccountID: account, userID: user).job
            job.traceContext = try trace.traceContext()
            let id = try await withOperatorConnection(database) {
                try await JobEnqueuer($0, schema: WebhookWorkerSchema.queue).enqueue(job)
            }
            print("enqueued job \(id ?? 0)")
        }
    }

    struct Noop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "noop", abstract: "Enqueue no-op jobs (to check that replicas are working).")
        @Option(help: "How many.") var count: Int = 1
        @OptionGroup var trace: TraceOptions
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            guard (1...1_000_000).contains(count) else {
                throw CommandFailure.usage("invalid --count \(count): expected 1 to 1000000")
            }
            let traceContext = try trace.traceContext()
            let inserted = try await withOperatorConnection(database) {
                try await JobEnqueuer($0, schema: WebhookWorkerSchema.queue).enqueue(
                    NewJob(kind: "noop", traceContext: traceContext), copies: count)
            }
            print("enqueued \(inserted) noop job(s)")
        }
    }
}

/// `--traceparent`: the trace the job's spans continue, stored in `trace_context`.
struct TraceOptions: ParsableArguments {
    @Option(
        help: """
            A W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>) whose trace the job's spans continue, as the web \
            app's trace_context column does.
            """)
    var traceparent: String?

    func traceContext() throws -> String? {
        guard let traceparent else { return nil }
        guard !traceparent.contains(" "), StoredTraceContext.isValid(traceparent) else {
            throw CommandFailure.usage(
                "invalid --traceparent '\(traceparent.prefix(80))': "
                    + "expected 00-<32 hex digits>-<16 hex digits>-<2 hex digits>")
        }
        return traceparent
    }
}
