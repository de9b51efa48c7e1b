import ArgumentParser
import JobQueue
import WebhookWorkerSchema

/// `jobs pause KIND` / `jobs resume KIND`.
struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "Pause and resume a kind of job across all replicas.",
        subcommands: [Pause.self, Resume.self])

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop every replica claiming KIND (within a poll interval); running jobs finish.")
        @Argument(help: "The kind, e.g. webhook.deliver.") var kind: String
        @OptionGroup var actor: ActorOptions
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            try await withOperatorConnection(database) {
                try await PausedKinds($0, schema: WebhookWorkerSchema.queue).pause(kind, by: actor.name)
            }
            print("paused \(kind): replicas stop claiming it")
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Let replicas claim KIND again.")
        @Argument(help: "The kind.") var kind: String
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let resumed = try await withOperatorConnection(database) {
                try await PausedKinds($0, schema: WebhookWorkerSchema.queue).resume(kind)
            }
            guard resumed else { throw notFound("\(kind) was not paused") }
            print("resumed \(kind)")
        }
    }
}
