import ArgumentParser

@main
struct WebhookWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook-worker",
        abstract: "Delivers OAuth integration webhooks out of PostgreSQL.",
        discussion: """
            The web app inserts a row into webhook_worker.jobs; replicas of this worker claim it, \
            POST a signed integration.connected webhook to every OAuth application entitled to it, \
            retry with backoff, and record every attempt and dead letter in the same database.
            """,
        subcommands: [RunCommand.self, MigrateCommand.self, EnqueueCommand.self, ReceiveCommand.self]
    )
}
