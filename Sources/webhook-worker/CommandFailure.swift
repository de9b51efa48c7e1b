import ArgumentParser
import Foundation

/// How a command ends when it does not succeed: one line for standard error and an exit status.
///
/// Commands throw it (or a ``SettingError``, or ArgumentParser's validation errors) and never
/// exit themselves; ``WebhookWorker/main()`` is the one place that prints the line and exits.
/// The statuses are the README's: 1 nothing found where something was asked for (or the
/// database is unreachable), 2 bad usage or a bad setting.
struct CommandFailure: Error {
    /// The line, printed as `webhook-worker: <message>`; nil when the command has said it already.
    let message: String?
    let status: Int32

    /// Nothing found where something was asked for.
    static func notFound(_ message: String) -> CommandFailure { CommandFailure(message: message, status: 1) }

    /// The database could not be reached (the message names the server, never the password).
    static func unreachable(_ message: String) -> CommandFailure { CommandFailure(message: message, status: 1) }

    /// Bad usage found only once the command runs.
    static func usage(_ message: String) -> CommandFailure { CommandFailure(message: message, status: 2) }

    /// A failure the command reported itself (e.g. `receive`'s failed signature checks).
    static let alreadyReported = CommandFailure(message: nil, status: 1)

    /// Prints `message` to standard error as the program's own message, on one line: libpq's
    /// own messages span lines (a connection error puts its hint on a second, indented line).
    static func printError(_ message: String) {
        let line = message.split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
            .joined(separator: " ")
        FileHandleOutput.write("webhook-worker: \(line)\n")
    }

    /// Ends the process for `error`, whatever a command threw.
    static func exit(for error: any Error, command: any ParsableCommand.Type) -> Never {
        switch error {
        case let failure as CommandFailure:
            if let message = failure.message { printError(message) }
            Foundation.exit(failure.status)
        case let setting as SettingError:
            printError(setting.description)
            Foundation.exit(2)
        default:
            // ArgumentParser's own: help, --version, validation (bad usage exits 2, not its 64).
            if command.exitCode(for: error) == .validationFailure {
                FileHandleOutput.write(command.fullMessage(for: error) + "\n")
                Foundation.exit(2)
            }
            command.exit(withError: error)
        }
    }
}
