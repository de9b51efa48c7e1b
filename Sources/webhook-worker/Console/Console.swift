import Crypto
import Foundation
import JobQueue
import LibPQ
import Logging
import WebhookDelivery
import WebhookWorkerSchema

/// The operator web console: pages that read, and POST forms that act, only through the library
/// types the command line uses (JobQueue's and WebhookDelivery's), never SQL of its own (but for
/// its sessions' sign-out list, ``ConsoleSignOuts``, which nothing else reads). Served by
/// `webhook-worker console` and by `run --console` on `--http-port`, under `/console`.
///
/// Security: only the host names of ``ConsoleHosts`` are answered (DNS rebinding); with tokens
/// (`WORKER_CONSOLE_TOKEN`), every page and action needs one, as a bearer header or through the
/// login form's session cookie, which signing out ends everywhere (``ConsoleSignOuts``); every
/// POST of a session carries its CSRF token; a field with a control character is refused;
/// read-only mode refuses every POST; an action runs in one transaction with its audit row, so
/// nothing is done that is not recorded; refusals, sign-ins and sign-outs are recorded too; every
/// answer carries ``ConsoleResponse/securityHeaders``; everything rendered goes through ``HTML``.
final class Console: Sendable {
    let database: PostgresConnectionPool
    let sessions: ConsoleSessions
    let hosts: ConsoleHosts
    let readOnly: Bool
    let logger: Logger
    /// Kinds the jobs page offers even when none is queued.
    let knownKinds: [String]

    static let flashCookie = "wwc_flash"
    /// The audit table's actor for a request that proved no identity.
    static let anonymous = "anonymous"

    init(
        database: PostgresConnectionPool, tokens: ConsoleTokens, hosts: ConsoleHosts = ConsoleHosts(),
        readOnly: Bool, logger: Logger, knownKinds: [String] = ["integration.connected", "noop", "webhook.deliver"]
    ) {
        self.database = database
        self.sessions = ConsoleSessions(tokens: tokens)
        self.hosts = hosts
        self.readOnly = readOnly
        self.logger = logger
        self.knownKinds = knownKinds
    }

    /// Answers one request, with the security headers.
    func respond(_ request: ConsoleRequest) async -> ConsoleResponse {
        var response = await route(request)
        response.headers += ConsoleResponse.securityHeaders
        return response
    }

    private func cookie(_ name: String, _ value: String, maxAge: Int, request: ConsoleRequest) -> (String, String) {
        (
            "Set-Cookie",
            "\(name)=\(value); Path=/console; Max-Age=\(maxAge); HttpOnly; SameSite=Strict"
                + (request.forwardedHTTPS ? "; Secure" : "")
        )
    }

    private func route(_ request: ConsoleRequest) async -> ConsoleResponse {
        var path = request.path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        // Before anything else, the style sheet included: a name the console does not know is a
        // page of another site that had its name re-resolved to this address (DNS rebinding).
        guard hosts.allows(host: request.host) else {
            logger.warning(
                "console: a request for a host name not allowed was refused (see --allowed-host)",
                metadata: [
                    "http.host": "\(ConsoleRequest.printable(request.host ?? ""))", "http.method": "\(request.method)",
                    "path": "\(ConsoleRequest.printable(path))",
                ])
            if request.method == "POST" {
                _ = await recordEvent(
                    Self.anonymous, path, detail: ["host": ConsoleRequest.printable(request.host ?? "")],
                    outcome: "refused: Host not allowed")
            }
            return .text(421, "misdirected request: this console does not answer to that host name")
        }
        if path == "/console/style.css" && request.method == "GET" {
            return ConsoleResponse(status: 200, headers: [("Content-Type", "text/css; charset=utf-8")], body: Self.css)
        }
        if request.method == "POST" && (request.crossSite || request.origin.map { !hosts.allows(origin: $0) } == true) {
            logger.warning("console: a POST from another site was refused", metadata: ["path": "\(path)"])
            _ = await recordEvent(
                Self.anonymous, path, detail: ["origin": ConsoleRequest.printable(request.origin ?? "")],
                outcome: "refused: sent from another site")
            return .text(403, "refused: this form was sent from another site")
        }
        if path == "/console/login" { return await login(request) }

        // Who is asking.
        var identity: ConsoleIdentity?
        var setCookies: [(String, String)] = []
        if !sessions.tokens.isEmpty, let header = request.authorization {
            guard header.lowercased().hasPrefix("bearer "),
                let token = sessions.tokens.match(String(header.dropFirst(7)))
            else {
                logger.warning("console: a wrong bearer token was refused", metadata: ["path": "\(path)"])
                return .text(401, "wrong token")
            }
            identity = ConsoleIdentity(actor: token.name, method: .bearer)
        } else if let value = request.cookies[ConsoleSessions.cookieName], let verified = sessions.verify(value) {
            guard case .session(let nonce) = verified.method else { return .text(500, "unexpected session") }
            do {
                let signedOut = try await database.withConnection {
                    try await ConsoleSignOuts($0).isSignedOut(nonce: nonce)
                }
                if !signedOut { identity = verified }
            } catch {
                logger.error("console: could not check a session", metadata: ["error": "\(error)"])
                return .text(503, "the database could not answer; see the worker's log")
            }
        }
        if identity == nil, sessions.tokens.isEmpty, let issued = sessions.issue(actor: ConsoleSessions.localActor) {
            identity = ConsoleIdentity(actor: ConsoleSessions.localActor, method: .session(nonce: issued.nonce))
            setCookies.append(
                cookie(
                    ConsoleSessions.cookieName, issued.value, maxAge: Int(ConsoleSessions.lifetime), request: request))
        }
        guard let identity else {
            if request.method == "GET" { return .seeOther("/console/login") }
            return .text(401, "sign in first: a bearer token or the login form")
        }
        if let field = request.fieldWithControlCharacter {
            logger.warning(
                "console: a field with a control character was refused", metadata: ["field": "\(field)"])
            if request.method == "POST" {
                _ = await recordEvent(
                    identity.actor, path, detail: ["field": field], outcome: "refused: control character in a field")
            }
            return .text(400, "refused: the field '\(field)' holds a control character")
        }

        var response: ConsoleResponse
        if request.method == "POST" {
            response = await post(path, request, identity)
        } else if request.method == "GET" || request.method == "HEAD" {
            var flash: Flash?
            if let value = request.cookies[Self.flashCookie] {
                flash = Flash(cookieValue: value)
                setCookies.append(cookie(Self.flashCookie, "", maxAge: 0, request: request))
            }
            var csrf: String?
            if case .session(let nonce) = identity.method {
                csrf = sessions.csrfToken(actor: identity.actor, nonce: nonce)
            }
            let context = PageContext(
                actor: identity.actor, csrf: csrf, readOnly: readOnly, flash: flash,
                canSignOut: !sessions.tokens.isEmpty && identity.method != .bearer, path: path,
                query: request.query)
            response = await page(path, request, context)
        } else {
            response = .text(405, "method not allowed")
        }
        response.headers += setCookies
        return response
    }

    // MARK: signing in

    private func login(_ request: ConsoleRequest) async -> ConsoleResponse {
        if sessions.tokens.isEmpty { return .seeOther("/console") }
        if request.method == "GET" { return .html(Pages.login(message: nil)) }
        guard request.method == "POST" else { return .text(405, "method not allowed") }
        if let field = request.fieldWithControlCharacter {
            _ = await recordEvent(
                Self.anonymous, "/console/login", action: "console.sign_in", detail: ["field": field],
                outcome: "refused: control character in a field")
            return .text(400, "refused: the field '\(field)' holds a control character")
        }
        guard let presented = request.form["token"], let token = sessions.tokens.match(presented),
            let issued = sessions.issue(actor: token.name)
        else {
            logger.warning("console: a sign-in with a wrong token was refused")
            _ = await recordEvent(
                Self.anonymous, "session", action: "console.sign_in", detail: [:], outcome: "refused: wrong token")
            return .html(401, Pages.login(message: "Wrong token."))
        }
        // No session without its audit row.
        guard
            await recordEvent(token.name, "session", action: "console.sign_in", detail: [:], outcome: "ok")
        else {
            return .text(500, "not signed in: the sign-in could not be recorded in the audit table; see the log")
        }
        logger.info("console: signed in", metadata: ["actor": "\(token.name)"])
        var response = ConsoleResponse.seeOther("/console")
        response.headers.append(
            cookie(ConsoleSessions.cookieName, issued.value, maxAge: Int(ConsoleSessions.lifetime), request: request))
        return response
    }

    /// Signs the session out on every console (until its expiry), with its audit row.
    private func logout(_ request: ConsoleRequest, _ identity: ConsoleIdentity) async -> ConsoleResponse {
        guard sessions.checkCSRF(request.form["csrf"], for: identity) else {
            _ = await recordEvent(
                identity.actor, "session", action: "console.sign_out", detail: [:], outcome: "refused: bad CSRF token")
            return .text(403, "missing CSRF token")
        }
        if case .session(let nonce) = identity.method {
            do {
                try await database.transaction { connection in
                    try await ConsoleSignOuts(connection).record(nonce: nonce, actor: identity.actor)
                    try await AuditLog(connection).record(
                        actor: identity.actor, action: "console.sign_out", target: "session", outcome: "ok")
                }
            } catch {
                logger.error("console: could not sign a session out", metadata: ["error": "\(error)"])
                return .text(500, "not signed out: the database could not record it; see the worker's log")
            }
            logger.info("console: signed out", metadata: ["actor": "\(identity.actor)"])
        }
        var response = ConsoleResponse.seeOther(sessions.tokens.isEmpty ? "/console" : "/console/login")
        response.headers.append(cookie(ConsoleSessions.cookieName, "", maxAge: 0, request: request))
        return response
    }

    // MARK: actions

    /// What an action did, for the flash message, the log and the audit table.
    struct Outcome {
        var ok: Bool
        var message: String
        var action: String
        var target: String
        var detail: [String: String] = [:]
        /// Where the browser goes next when the form gave no `back`.
        var location: String
    }

    /// An action's audit row could not be written: thrown inside its transaction, so the action is
    /// undone with it.
    private struct AuditFailure: Error {
        let underlying: any Error
    }

    private func post(_ path: String, _ request: ConsoleRequest, _ identity: ConsoleIdentity) async -> ConsoleResponse {
        if path == "/console/logout" { return await logout(request, identity) }
        if readOnly {
            _ = await recordEvent(identity.actor, path, detail: [:], outcome: "refused: read-only")
            return .text(403, "this console is read-only")
        }
        guard sessions.checkCSRF(request.form["csrf"], for: identity) else {
            _ = await recordEvent(identity.actor, path, detail: [:], outcome: "refused: bad CSRF token")
            return .text(403, "missing or wrong CSRF token: reload the page and try again")
        }
        let action = "POST \(path)"
        let outcome: Outcome
        do {
            // The action and its audit row commit together or not at all: an action that cannot be
            // recorded is not done.
            let done = try await database.transaction { connection -> Outcome? in
                guard let done = try await act(path, request, actor: identity.actor, connection) else { return nil }
                do {
                    try await AuditLog(connection).record(
                        actor: identity.actor, action: done.action, target: done.target, detail: done.detail,
                        outcome: Self.auditOutcome(done))
                } catch {
                    throw AuditFailure(underlying: error)
                }
                return done
            }
            guard let done else { return .text(404, "no such action") }
            outcome = done
            log(identity.actor, outcome)
        } catch let failure as AuditFailure {
            logger.error(
                "console: an action was not done: its audit row could not be written",
                metadata: ["action": "\(action)", "error": "\(failure.underlying)"])
            return .text(500, "not done: the action could not be recorded in the audit table; see the worker's log")
        } catch {
            // Nothing was done (the transaction rolled back); the attempt is recorded on its own.
            let message: String
            if let error = error as? ConsoleInputError {
                message = error.message
            } else {
                logger.error("console: an action failed", metadata: ["action": "\(action)", "error": "\(error)"])
                message = "failed: \(error)"
            }
            outcome = Outcome(
                ok: false, message: message, action: action, target: path, location: Self.back(request) ?? "/console")
            log(identity.actor, outcome)
            _ = await record(
                identity.actor, action: action, target: path, detail: [:], outcome: Self.auditOutcome(outcome))
        }
        var response = ConsoleResponse.seeOther(Self.back(request) ?? outcome.location)
        response.headers.append(
            cookie(
                Self.flashCookie, Flash(ok: outcome.ok, message: outcome.message).cookieValue, maxAge: 60,
                request: request))
        return response
    }

    private static func auditOutcome(_ outcome: Outcome) -> String {
        String((outcome.ok ? "ok" : "failed: \(outcome.message)").prefix(500))
    }

    private func log(_ actor: String, _ outcome: Outcome) {
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
    private func recordEvent(
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
    private func record(
        _ actor: String, action: String, target: String, detail: [String: String], outcome: String
    ) async -> Bool {
        do {
            try await database.withConnection { connection in
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

    /// Does the action of `path` on `connection` (in the caller's transaction); nil when there is none.
    private func act(
        _ path: String, _ request: ConsoleRequest, actor: String, _ connection: PostgresConnection
    ) async throws -> Outcome? {
        let parts = path.split(separator: "/").map(String.init)  // ["console", "deliveries", id, "resend"]
        let by = "console:\(actor)"
        switch (parts.dropFirst().first, parts.count) {
        case ("deliveries", 4):
            guard let id = UUID(uuidString: parts[2]) else {
                throw ConsoleInputError("'\(parts[2])' is not a delivery id")
            }
            let target = "delivery:\(id.uuidString.lowercased())"
            let location = "/console/deliveries/\(id.uuidString.lowercased())"
            if parts[3] == "resend" {
                do {
                    let job = try await Deliveries(connection).resend(id)
                    return Outcome(
                        ok: true, message: "Queued delivery \(id.uuidString.lowercased()) again as job \(job).",
                        action: "delivery.resend", target: target, detail: ["job_id": "\(job)"], location: location)
                } catch let error as Deliveries.ResendError {
                    return Outcome(
                        ok: false, message: error.description, action: "delivery.resend", target: target,
                        location: location)
                }
            }
            if parts[3] == "cancel" {
                let cancelled = try await Deliveries(connection).cancel(id: id)
                return Outcome(
                    ok: cancelled.deliveries > 0,
                    message: cancelled.deliveries > 0
                        ? "Cancelled delivery \(id.uuidString.lowercased())."
                        : "The delivery is not pending: nothing to cancel.",
                    action: "delivery.cancel", target: target, detail: ["jobs_removed": "\(cancelled.jobsRemoved)"],
                    location: location)
            }
            return nil
        case ("endpoints", 3) where parts[2] == "enable" || parts[2] == "disable":
            guard let endpoint = request.field("endpoint") else { throw ConsoleInputError("which endpoint?") }
            let enable = parts[2] == "enable"
            let endpoints = Endpoints(connection)
            let key = try await endpoints.key(for: endpoint)
            let state = try await endpoints.setEnabled(key: key, enable, by: by)
            return Outcome(
                ok: true, message: "\(enable ? "Enabled" : "Disabled") \(key): now \(state ?? "closed").",
                action: enable ? "endpoint.enable" : "endpoint.disable", target: "endpoint:\(key)",
                location: "/console/endpoints")
        case ("dead-letters", 4) where parts[3] == "retry":
            guard let id = Int64(parts[2]) else { throw ConsoleInputError("'\(parts[2])' is not a dead letter id") }
            do {
                // Its own savepoint: a refusal is an error of the database, which would otherwise
                // abort the transaction that must still record it.
                let job = try await connection.transaction {
                    try await DeadLetters($0, schema: WebhookWorkerSchema.queue).requeue(id: id)
                }
                return Outcome(
                    ok: true, message: "Requeued dead letter \(id) as job \(job).", action: "dead_letter.retry",
                    target: "dead_letter:\(id)", detail: ["job_id": "\(job)"], location: "/console/dead-letters/\(id)")
            } catch let error as DeadLetters.RequeueError {
                return Outcome(
                    ok: false, message: error.description, action: "dead_letter.retry", target: "dead_letter:\(id)",
                    location: "/console/dead-letters/\(id)")
            }
        case ("dead-letters", 3) where parts[2] == "retry":
            let filter = try DeadLetterFilter(request)
            let ids = try await filter.requeueableIDs(connection)
            let summary = try await DeadLetters(connection, schema: WebhookWorkerSchema.queue).requeueAll(
                DeadLetters.Filter(ids: ids))
            var message = "Requeued \(summary.requeued) of \(summary.matched) matching dead letter(s)"
            if summary.skippedAlreadyQueued > 0 {
                message += "; skipped \(summary.skippedAlreadyQueued) whose job is already queued"
            }
            return Outcome(
                ok: true, message: message + ".", action: "dead_letter.retry_all", target: "dead_letters",
                detail: filter.detail.merging(
                    ["matched": "\(summary.matched)", "requeued": "\(summary.requeued)"], uniquingKeysWith: { $1 }),
                location: "/console/dead-letters")
        case ("dead-letters", 3) where parts[2] == "purge":
            guard let text = request.field("older_than"), let age = DurationText.parse(text), age > .zero else {
                throw ConsoleInputError("give an age to purge beyond, like 30d or 12h")
            }
            // Exactly what the page lists with the same filters (beyond its first 200 rows), older than the age.
            let filter = try DeadLetterFilter(request)
            let deleted = try await filter.purge(connection, diedBefore: Date().addingTimeInterval(-age.totalSeconds))
            return Outcome(
                ok: true, message: "Deleted \(deleted) matching dead letter(s) older than \(text).",
                action: "dead_letter.purge", target: "dead_letters",
                detail: filter.detail.merging(
                    ["older_than": text, "deleted": "\(deleted)"], uniquingKeysWith: { $1 }),
                location: "/console/dead-letters")
        case ("jobs", 3) where parts[2] == "pause" || parts[2] == "resume":
            guard let kind = request.field("kind"), kind.count <= 200 else { throw ConsoleInputError("which kind?") }
            let pause = parts[2] == "pause"
            let pausedKinds = PausedKinds(connection, schema: WebhookWorkerSchema.queue)
            let changed = pause ? try await pausedKinds.pause(kind, by: by) : try await pausedKinds.resume(kind)
            let message =
                pause
                ? (changed ? "Paused \(kind): no replica claims it until resumed." : "\(kind) was paused already.")
                : (changed ? "Resumed \(kind)." : "\(kind) was not paused.")
            return Outcome(
                ok: true, message: message, action: pause ? "kind.pause" : "kind.resume", target: "kind:\(kind)",
                location: "/console/jobs")
        default:
            return nil
        }
    }

    // MARK: pages

    private func page(_ path: String, _ request: ConsoleRequest, _ context: PageContext) async -> ConsoleResponse {
        let parts = path.split(separator: "/").map(String.init)
        do {
            switch (parts.dropFirst().first, parts.count) {
            case (nil, 1):
                let data = try await database.withConnection { connection in
                    OverviewData(
                        statistics: try await QueueStatistics.read(connection, schema: WebhookWorkerSchema.queue),
                        minutes: try await QueueStatistics.throughputPerMinute(
                            connection, schema: WebhookWorkerSchema.queue, minutes: 60),
                        endpoints: try await Endpoints(connection).notClosed())
                }
                return .html(Pages.overview(data, context))
            case ("deliveries", 2):
                let search = try DeliverySearchForm(request)
                let found: [DeliverySummary]? =
                    search.isEmpty && request.query["all"] == nil
                    ? try await database.withConnection { try await Deliveries($0).search(.init(), limit: 50) }
                    : try await database.withConnection { try await Deliveries($0).search(search.search, limit: 200) }
                return .html(Pages.deliveries(search, found ?? [], context))
            case ("deliveries", 3):
                guard let id = UUID(uuidString: parts[2]) else {
                    return notFound(context, "'\(parts[2])' is not a delivery id")
                }
                let data = try await database.withConnection { connection -> DeliveryPageData? in
                    let deliveries = Deliveries(connection)
                    guard let delivery = try await deliveries.get(id) else { return nil }
                    let summary = try await deliveries.search(.init(deliveryID: id), limit: 1).first
                    return DeliveryPageData(
                        delivery: delivery, clientName: summary?.clientName, clientPublicID: summary?.clientPublicID,
                        attempts: try await deliveries.attempts(of: id))
                }
                guard let data else { return notFound(context, "No delivery with id \(parts[2]).") }
                return .html(Pages.delivery(data, context))
            case ("endpoints", 2):
                let endpoints = try await database.withConnection { try await Endpoints($0).overview() }
                return .html(Pages.endpoints(endpoints, context))
            case ("dead-letters", 2):
                let filter = try DeadLetterFilter(request)
                let (letters, reasons, clients) = try await database.withConnection { connection in
                    let letters = try await filter.list(connection)
                    let deliveries = letters.compactMap(Pages.deliveryID)
                    return (
                        letters,
                        try await DeadLetters(connection, schema: WebhookWorkerSchema.queue).reasons(),
                        try await Deliveries(connection).clientNames(of: deliveries)
                    )
                }
                return .html(Pages.deadLetters(letters, filter: filter, reasons: reasons, clients: clients, context))
            case ("dead-letters", 3):
                guard let id = Int64(parts[2]) else {
                    return notFound(context, "'\(parts[2])' is not a dead letter id")
                }
                let data = try await database.withConnection { connection -> (DeadLetter, [JobAttemptRecord])? in
                    let deadLetters = DeadLetters(connection, schema: WebhookWorkerSchema.queue)
                    guard let letter = try await deadLetters.get(id: id) else { return nil }
                    return (letter, try await deadLetters.attempts(ofJob: letter.jobID))
                }
                guard let data else { return notFound(context, "No dead letter with id \(id).") }
                return .html(Pages.deadLetter(data.0, attempts: data.1, context))
            case ("jobs", 2):
                let statistics = try await database.withConnection {
                    try await QueueStatistics.read($0, schema: WebhookWorkerSchema.queue)
                }
                return .html(Pages.jobs(statistics, knownKinds: knownKinds, context))
            case ("audit", 2):
                let entries = try await database.withConnection { try await AuditLog($0).recent(limit: 200) }
                return .html(Pages.audit(entries, context))
            default:
                return notFound(context, "No such page.")
            }
        } catch let error as ConsoleInputError {
            return .html(400, Pages.message("Bad request", error.message, context))
        } catch {
            logger.error("console: a page failed", metadata: ["path": "\(path)", "error": "\(error)"])
            return .html(500, Pages.message("Error", "The database could not answer; see the worker's log.", context))
        }
    }

    private func notFound(_ context: PageContext, _ message: String) -> ConsoleResponse {
        .html(404, Pages.message("Not found", message, context))
    }
}

/// A bad value in a form or a query: shown to the operator, never a crash.
struct ConsoleInputError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// The one-line message shown once after an action (carried by a short-lived cookie, so it is
/// never part of a URL someone could craft).
struct Flash: Equatable {
    let ok: Bool
    let message: String

    init(ok: Bool, message: String) {
        self.ok = ok
        self.message = message
    }

    var cookieValue: String {
        Data(((ok ? "ok|" : "error|") + String(message.prefix(1000))).utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    init?(cookieValue: String) {
        var base64 = cookieValue.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8),
            let bar = text.firstIndex(of: "|")
        else { return nil }
        ok = text[..<bar] == "ok"
        message = String(text[text.index(after: bar)...])
    }
}

/// A time a form field gives: a duration ago (`1h`, `2d`), an ISO 8601 time, a date, or what a
/// `datetime-local` field sends (`2026-12-01T10:30`, read as UTC).
enum ConsoleTime {
    static func parse(_ text: String) -> Date? {
        if let duration = DurationText.parse(text) { return Date().addingTimeInterval(-duration.totalSeconds) }
        for candidate in [text, text + "Z", text + ":00Z", text + "T00:00:00Z"] {
            if let date = UTCTime.parseISO8601(candidate) { return date }
        }
        return nil
    }

    static func format(_ date: Date?) -> String {
        guard let date else { return "" }
        return UTCTime.iso8601(date, fractionDigits: 0).replacingOccurrences(of: "T", with: " ")
    }
}
