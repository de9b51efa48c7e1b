import ArgumentParser
import Foundation
import LibPQ

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
            let payload = try JSONSerialization.data(
                withJSONObject: ["integration_account_id": account, "user_id": user], options: [.sortedKeys])
            let id = try await enqueue(
                kind: "integration.connected", payload: PostgresJSON(bytes: Array(payload)), conninfo: database.conninfo)
            print("enqueued job \(id)")
        }
    }

    struct Noop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "noop", abstract: "Enqueue no-op jobs (to check that replicas are working).")
        @Option(help: "How many.") var count: Int = 1
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            guard (1...1_000_000).contains(count) else {
                printError("invalid --count \(count): expected 1 to 1000000")
                throw ExitCode(2)
            }
            let connection = try await connectOrExit(database.conninfo)
            let result = try await connection.query(
                PostgresQuery(
                    "enqueueNoop",
                    "INSERT INTO webhook_worker.jobs (kind) SELECT 'noop' FROM generate_series(1, $1)"),
                [count])
            await connection.close()
            print("enqueued \(result.affectedRows) noop job(s)")
        }
    }
}

func enqueue(kind: String, payload: PostgresJSON, conninfo: String?) async throws -> Int64 {
    let connection = try await connectOrExit(conninfo)
    defer { Task { await connection.close() } }
    let row = try await connection.query(
        PostgresQuery("enqueue", "SELECT webhook_worker.enqueue($1, $2::jsonb) AS id"), [kind, payload]
    ).first
    return try row?.decode("id") ?? 0
}
