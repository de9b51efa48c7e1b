import Foundation
import Logging
import WebhookDelivery

/// Signing in (the form that trades a token for a session cookie) and out.
extension Console {
    /// GET /console/login: the form; a console without tokens has nothing to sign in to.
    func loginPage(_ context: ConsoleContext) async -> ConsoleResponse {
        if sessions.tokens.isEmpty { return .seeOther("/console") }
        return .html(Pages.login(message: nil))
    }

    /// HEAD /console/login.
    func loginHead(_ context: ConsoleContext) async -> ConsoleResponse {
        if sessions.tokens.isEmpty { return .seeOther("/console") }
        return .text(405, "method not allowed")
    }

    /// POST /console/login: a session for the token given, with its audit row.
    func signIn(_ context: ConsoleContext) async -> ConsoleResponse {
        if sessions.tokens.isEmpty { return .seeOther("/console") }
        let request = context.request
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

    /// POST /console/logout: signs the session out on every console (until its expiry), with its
    /// audit row. Its own CSRF check (allowed in read-only mode, recorded as a sign-out).
    func signOut(_ context: ConsoleContext) async -> ConsoleResponse {
        let identity = context.signedIn
        guard sessions.checkCSRF(context.request.form["csrf"], for: identity) else {
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
        response.headers.append(cookie(ConsoleSessions.cookieName, "", maxAge: 0, request: context.request))
        return response
    }
}
