import ArgumentParser
import Foundation

@main
struct WebhookWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook-worker",
        abstract: "Delivers OAuth integration webhooks out of PostgreSQL.",
        discussion: """
            The web app enqueues an integration.connected job (SQL: webhook_worker.enqueue()); \
            replicas of this worker claim it, POST a signed integration.connected webhook to every \
            OAuth application entitled to it, retry with backoff, and record every attempt and dead \
            letter in the same database.

            Exit status: 0 success, 1 nothing found where something was asked for (or the \
            database is unreachable), 2 bad usage or a bad setting.
            """,
        version: BuildInfo.version,
        subcommands: [
            RunCommand.self, MigrateCommand.self, EnqueueCommand.self, DeadLettersCommand.self, DeliveriesCommand.self,
            StatsCommand.self, PruneCommand.self, ReceiveCommand.self, EndpointsCommand.self, JobsCommand.self,
            SecretsCommand.self, ConsoleCommand.self, SettingsCommand.self,
        ]
    )

    /// Like ArgumentParser's own, except that every failure ends in ``CommandFailure/exit(for:command:)``.
    static func main() async {
        // A send to a peer that is gone must fail with EPIPE, not end a replica. NIO ignores SIGPIPE
        // once it opens its first socket, and libpq's connections never raise it, but libpq's cancel
        // requests can, before NIO has opened anything too: ignored from the first line.
        signal(SIGPIPE, SIG_IGN)
        MallocArenas.apply(environment: ProcessInfo.processInfo.environment)
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            CommandFailure.exit(for: error, command: self)
        }
    }
}
