import ArgumentParser
import Foundation
import JobQueue
import LibPQ

/// The database as operator commands use it: statements whose rows come back as JSON objects
/// (PostgreSQL does the typing), shown as a table or printed as JSON.
struct OperatorDatabase {
    let connection: PostgresConnection

    static func open(_ options: DatabaseOptions) async throws -> OperatorDatabase {
        OperatorDatabase(connection: try await connectOrExit(options.conninfo))
    }

    func close() async { await connection.close() }

    /// Runs a SELECT and returns its rows as JSON objects, keys being the column names.
    func rows(_ name: String, _ select: String, _ bindings: [any PostgresEncodable] = []) async throws -> [[String: Any]] {
        let wrapped = PostgresQuery(name, "SELECT coalesce(json_agg(r), '[]'::json)::text AS rows FROM (\(select)) r")
        let text: String = try await connection.query(wrapped, bindings).first?.decode("rows") ?? "[]"
        return (try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]]) ?? []
    }

    @discardableResult
    func execute(_ name: String, _ sql: String, _ bindings: [any PostgresEncodable] = []) async throws -> PostgresResult {
        try await connection.query(PostgresQuery(name, sql), bindings)
    }
}

/// `--since`: a duration ago (`1h`, `2d`) or an ISO 8601 time.
struct Since: ExpressibleByArgument {
    let date: Date

    init?(argument: String) {
        if let duration = DurationText.parse(argument) {
            date = Date().addingTimeInterval(-DurationText.seconds(duration))
        } else if let parsed = try? Date(argument, strategy: .iso8601) {
            date = parsed
        } else if let parsed = try? Date(argument + "T00:00:00Z", strategy: .iso8601) {
            date = parsed
        } else {
            return nil
        }
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// `--older-than`: a duration.
struct Age: ExpressibleByArgument {
    let duration: Duration
    init?(argument: String) {
        guard let duration = DurationText.parse(argument) else { return nil }
        self.duration = duration
    }
    var cutoff: Date { Date().addingTimeInterval(-DurationText.seconds(duration)) }
}

/// Ends a command with exit status 1: nothing found where something was asked for.
func notFound(_ message: String) -> ExitCode {
    printError(message)
    return ExitCode(1)
}

/// Progress on standard error for long batch work, so standard output stays parseable.
func progress(_ text: String) {
    FileHandleOutput.write("\r\(text)")
}
