import ArgumentParser
import Foundation
import WebhookDelivery

/// `secrets retire --client ID`: keeps a client's previous webhook secret signing during the
/// overlap, for web apps that do not install the optional trigger.
struct SecretsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secrets",
        abstract: "Webhook secret rotation: keep a client's previous secret signing for the overlap.",
        subcommands: [Retire.self])

    struct Retire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record a client's previous webhook secret, read from standard input (never an argument).",
            discussion: """
                Run it when the web app changes "OAuthClient"."webhookSecret" (or install \
                sql/optional/keep_retired_webhook_secrets.sql, which does it in the database). Until the \
                overlap passes (--secret-overlap of run, 24 h by default), webhook-signature carries a \
                signature with the old secret beside the new one. The secret is read up to the end of \
                input; one trailing line break (LF or CRLF) is dropped, and nothing else: trailing spaces are \
                part of the secret. It is never printed or logged.
                """)
        @Option(help: "The OAuth client: its id, public clientId, or key (client:<id>).") var client: String
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            guard let secret = Self.secret(fromInput: FileHandle.standardInput.readDataToEndOfFile()) else {
                throw ValidationError("the secret on standard input is not UTF-8")
            }
            guard !secret.isEmpty, !secret.contains("\0") else {
                throw ValidationError(
                    """
                    no secret on standard input: pipe the previous secret in, e.g. printf '%s' \"$OLD\" | \
                    webhook-worker secrets retire --client ID
                    """
                )
            }
            let id = try await withOperatorConnection(database) { connection in
                // A secret kept under a name that is no client would sign nothing: say so instead.
                guard let id = try await OAuthClientName(connection).existingID(for: client) else {
                    throw notFound("no OAuth client \(client) (give its id, public clientId, or client:<id>)")
                }
                try await RetiredSecrets(connection).retire(secret, client: id)
                return id
            }
            print("kept the previous secret of client \(id); it signs beside the current one for the overlap")
        }

        /// The secret as piped in: one trailing line break (CRLF or LF) dropped, every other byte
        /// kept, trailing spaces included, since the web app compares secrets byte for byte. Trimmed
        /// as bytes: in Swift "\r\n" is one `Character`, so trimming Characters cut one too many.
        /// Nil when the input is not UTF-8, rather than a secret with replacement characters.
        static func secret(fromInput data: Data) -> String? {
            var bytes = [UInt8](data)
            if bytes.last == UInt8(ascii: "\n") {
                bytes.removeLast()
                if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
            }
            return String(bytes: bytes, encoding: .utf8)
        }
    }
}
