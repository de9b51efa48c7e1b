import ArgumentParser
import Foundation
import JobQueue
import LibPQ
import Synchronization

/// Runs `body` on a new connection for an operator command and closes it afterwards, however
/// `body` ends. An unreachable database prints one line and exits 1.
@discardableResult
func withOperatorConnection<T>(
    _ options: DatabaseOptions, _ body: (PQConnection) async throws -> T
) async throws -> T {
    let connection = try await connectOrExit(options.conninfo)
    return try await withTeardown {
        try await body(connection)
    } teardown: {
        await connection.close()
    }
}

/// `--actor`: who an operator command acts as, recorded beside what it changes (`disabled_by`,
/// `paused_by`). Containers rarely set `USER`, hence the option and its variable.
struct ActorOptions: ParsableArguments {
    @Option(
        help:
            """
            Who is acting, recorded with the change. Env: WORKER_ACTOR. Default: $USER, or "unknown user" without \
            it.
            """)
    var actor: String?

    var name: String {
        let environment = ProcessInfo.processInfo.environment
        for candidate in [actor, environment["WORKER_ACTOR"], environment["USER"]] {
            if let candidate, !candidate.isEmpty { return candidate }
        }
        return "unknown user"
    }
}

/// `--since`: a duration ago (`1h`, `2d`) or an ISO 8601 time.
struct Since: ExpressibleByArgument {
    let date: Date

    init?(argument: String) {
        if let duration = DurationText.parse(argument) {
            date = Date().addingTimeInterval(-duration.totalSeconds)
        } else if let parsed = UTCTime.parseISO8601(argument) {
            date = parsed
        } else if let parsed = UTCTime.parseISO8601(argument + "T00:00:00Z") {
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
    var cutoff: Date { Date().addingTimeInterval(-duration.totalSeconds) }
}

/// Ends a command with exit status 1: nothing found where something was asked for.
func notFound(_ message: String) -> CommandFailure { .notFound(message) }

/// Progress on standard error for long batch work, so standard output stays parseable. Each
/// update overwrites the line; ``endProgress()`` ends it, so that what follows starts a line.
func progress(_ text: String) {
    FileHandleOutput.write("\r\(text)")
    progressShown.withLock { $0 = true }
}

/// Ends the progress line with a line break, if progress was shown.
func endProgress() {
    let shown = progressShown.withLock { shown in
        defer { shown = false }
        return shown
    }
    if shown { FileHandleOutput.write("\n") }
}

private let progressShown = Mutex(false)
