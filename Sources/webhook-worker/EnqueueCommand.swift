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
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let job = try IntegrationConnectedPayload(integrationAccountID: account, userID: user).job
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
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            guard (1...1_000_000).contains(count) else {
                throw CommandFailure.usage("invalid --count \(count): expected 1 to 1000000")
            }
            let inserted = try await withOperatorConnection(database) {
                try await JobEnqueuer($0, schema: WebhookWorkerSchema.queue).enqueue(
                    NewJob(kind: "noop"), copies: count)
            }
            print("enqueued \(inserted) noop job(s)")
        }
    }
}
