import ArgumentParser
import Foundation
import LibPQ
import WebhookWorkerSchema

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the schema's migrations (embedded in this binary). Safe to run concurrently and repeatedly.")

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        let logger = try logging.bootstrap()
        let connection = try await connectOrExit(database.conninfo)
        let applied = try await WebhookWorkerSchema.migrator.migrate(connection, logger: logger)
        await connection.close()
        print(applied.isEmpty ? "schema is up to date" : "applied \(applied.count) migration(s)")
    }
}

/// Connects, or ends the command with one line naming the server (never the password), exit 1.
/// Statements are sent unnamed when `preparedStatements` is false; by default as
/// WORKER_PREPARED_STATEMENTS says (off for a transaction pooler), so operator commands work
/// through one too, read by the same rule as `run`'s `--prepared-statements`.
func connectOrExit(_ conninfo: String?, preparedStatements: Bool? = nil) async throws -> PQConnection {
    var read = SettingsReader(environment: ProcessInfo.processInfo.environment)
    let prepared = try preparedStatements ?? read.onOff(RunSettings.preparedStatements, nil)
    do {
        return try await PQConnection.connect(
            conninfo, applicationName: "webhook-worker", preparedStatements: prepared,
            logger: .init(label: "webhook-worker.db"))
    } catch {
        throw CommandFailure.unreachable("\(error)")
    }
}
