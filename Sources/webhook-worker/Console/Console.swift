import Foundation
import JobQueue
import LibPQ
import Logging
import WebhookDelivery

/// The operator web console: pages that read, and POST forms that act, only through the library
/// types the command line uses (JobQueue's and WebhookDelivery's), never SQL of its own (but for
/// its sessions' sign-out list, ``ConsoleSignOuts``, which nothing else reads). Served by
/// `webhook-worker console` and by `run --console` on `--http-port`, under `/console`, on
/// Hummingbird's router: ``addRoutes(to:)`` lists every route, its middleware and its handler.
///
/// Security, as middleware (`ConsoleMiddleware.swift`): only the host names of ``ConsoleHosts``
/// are answered (DNS rebinding); with tokens (`WORKER_CONSOLE_TOKEN`), every page and action
/// needs one, as a bearer header or through the login form's session cookie, which signing out
/// ends everywhere (``ConsoleSignOuts``); every POST of a session carries its CSRF token; a field
/// with a control character is refused; read-only mode refuses every action; an action runs in
/// one transaction with its audit row, so nothing is done that is not recorded; refusals,
/// sign-ins and sign-outs are recorded too; every answer carries
/// ``ConsoleResponse/securityHeaders``; everything rendered goes through ``HTML``.
final class Console: Sendable {
    let database: PQConnectionPool
    let sessions: ConsoleSessions
    let hosts: ConsoleHosts
    let readOnly: Bool
    let logger: Logger
    /// Kinds the jobs page offers even when none is queued: by default those the worker has
    /// handlers for (``WorkerHandlers/kinds``).
    let knownKinds: [String]

    static let flashCookie = "wwc_flash"
    /// The audit table's actor for a request that proved no identity.
    static let anonymous = "anonymous"

    init(
        database: PQConnectionPool, tokens: ConsoleTokens, hosts: ConsoleHosts = ConsoleHosts(),
        readOnly: Bool, logger: Logger, knownKinds: [String] = WorkerHandlers.kinds
    ) {
        self.database = database
        self.sessions = ConsoleSessions(tokens: tokens)
        self.hosts = hosts
        self.readOnly = readOnly
        self.logger = logger
        self.knownKinds = knownKinds
    }

    /// A cookie of the console's: for its paths only, out of scripts' reach, never sent by
    /// another site's requests; `Secure` behind a TLS proxy.
    func cookie(_ name: String, _ value: String, maxAge: Int, request: ConsoleRequest) -> (String, String) {
        (
            "Set-Cookie",
            "\(name)=\(value); Path=/console; Max-Age=\(maxAge); HttpOnly; SameSite=Strict"
                + (request.forwardedHTTPS ? "; Secure" : "")
        )
    }

    // MARK: the audit table and the log

    /// What an action did, for the flash message, the log and the audit table.
    struct Outcome {
        var ok: Bool
        var message: String
        var action: String
        var target: String
        var detail: [String: String] = [:]
        /// Where the browser goes next when the form gave no `back`.
        var location: String
        /// Go to ``location`` even when the form gave a `back`: a page the action created.
        var locationWins = false
    }

    static func auditOutcome(_ outcome: Outcome) -> String {
        String((outcome.ok ? "ok" : "failed: \(outcome.message)").prefix(500))
    }

    func log(_ actor: String, _ outcome: Outcome) {
        let detail = outcome.detail.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        logger.notice(
            "console action",
            metadata: [
                "actor": "\(actor)", "action": "\(outcome.action)", "target": "\(outcome.target)",
                "outcome": "\(Self.auditOutcome(outcome))", "detail": "\(detail.joined(separator: " "))",
            ])
    }

    /// Logs and records a refused request or a sign-in in the audit table, as `POST <target>`
    /// unless `action` is given; whether it was recorded.
    func recordEvent(
        _ actor: String, _ target: String, action: String? = nil, detail: [String: String], outcome: String
    ) async -> Bool {
        logger.notice(
            "console action",
            metadata: [
                "actor": "\(actor)", "action": "\(action ?? "POST \(target)")", "target": "\(target)",
                "outcome": "\(outcome)",
            ])
        return await record(actor, action: action ?? "POST \(target)", target: target, detail: detail, outcome: outcome)
    }

    /// One audit row on its own; failures are logged.
    func record(
        _ actor: String, action: String, target: String, detail: [String: String], outcome: String
    ) async -> Bool {
        do {
            _ = try await database.withConnection { connection in
                try await AuditLog(connection).record(
                    actor: actor, action: ConsoleRequest.printable(action, limit: 200),
                    target: ConsoleRequest.printable(target, limit: 200), detail: detail, outcome: outcome)
            }
            return true
        } catch {
            logger.error("console: could not record an action in the audit table", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// The form's `back` when it is a path of the console (never another site).
    static func back(_ request: ConsoleRequest) -> String? {
        guard let back = request.form["back"], back.hasPrefix("/console"), !back.contains("//"), !back.contains("\\"),
            !back.unicodeScalars.contains(where: { $0.value < 0x21 || $0.value == 0x7f })
        else { return nil }
        return back
    }
}
