import Foundation
import HTTPTypes
import Hummingbird
import Logging

// The console's checks, as middleware in the order ``Console/addRoutes(to:)`` stacks them: each
// answers a request it refuses (logged, and audited when it is a POST) and passes the others on.

/// On every answer: ``ConsoleResponse/securityHeaders``.
struct ConsoleSecurityHeaders: RouterMiddleware {
    func handle(
        _ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response
    ) async throws -> Response {
        var response = try await next(request, context)
        response.append(ConsoleResponse.securityHeaders)
        // Content-Length last, after the headers the middleware added: the answer's bytes are
        // those of a response made with all its headers at once.
        if let length = response.headers[.contentLength] {
            response.headers[.contentLength] = nil
            response.headers.append(HTTPField(name: .contentLength, value: length))
        }
        return response
    }
}

/// Before anything else, the style sheet included: a name the console does not know is a page of
/// another site that had its name re-resolved to this address (DNS rebinding). 421.
struct ConsoleHostCheck: RouterMiddleware {
    let console: Console

    func handle(
        _ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response
    ) async throws -> Response {
        let host = context.request.host
        guard console.hosts.allows(host: host) else {
            console.logger.warning(
                "console: a request for a host name not allowed was refused (see --allowed-host)",
                metadata: [
                    "http.host": "\(ConsoleRequest.printable(host ?? ""))", "http.method": "\(context.request.method)",
                    "path": "\(ConsoleRequest.printable(context.path))",
                ])
            if request.method == .post {
                _ = await console.recordEvent(
                    Console.anonymous, context.path, detail: ["host": ConsoleRequest.printable(host ?? "")],
                    outcome: "refused: Host not allowed")
            }
            return ConsoleResponse.text(421, "misdirected request: this console does not answer to that host name")
                .response(for: request)
        }
        return try await next(request, context)
    }
}

/// A POST that a browser says another site sent (`Sec-Fetch-Site: cross-site`), or whose
/// `Origin` is not a page of the console, is refused with 403: the sign-in form's too.
struct ConsoleOriginCheck: RouterMiddleware {
    let console: Console

    func handle(
        _ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response
    ) async throws -> Response {
        let read = context.request
        if request.method == .post && (read.crossSite || read.origin.map { !console.hosts.allows(origin: $0) } == true)
        {
            console.logger.warning(
                "console: a POST from another site was refused", metadata: ["path": "\(context.path)"])
            _ = await console.recordEvent(
                Console.anonymous, context.path, detail: ["origin": ConsoleRequest.printable(read.origin ?? "")],
                outcome: "refused: sent from another site")
            return ConsoleResponse.text(403, "refused: this form was sent from another site").response(for: request)
        }
        return try await next(request, context)
    }
}

/// Who is asking: a bearer token, else a session cookie not signed out, else (a console without
/// tokens) a new `local` session. Nobody: a GET goes to the sign-in form, anything else gets 401.
struct ConsoleAuthentication: RouterMiddleware {
    let console: Console

    func handle(
        _ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response
    ) async throws -> Response {
        let sessions = console.sessions
        var context = context
        if !sessions.tokens.isEmpty, let header = context.request.authorization {
            guard header.lowercased().hasPrefix("bearer "),
                let token = sessions.tokens.match(String(header.dropFirst(7)))
            else {
                console.logger.warning(
                    "console: a wrong bearer token was refused", metadata: ["path": "\(context.path)"])
                return ConsoleResponse.text(401, "wrong token").response(for: request)
            }
            context.identity = ConsoleIdentity(actor: token.name, method: .bearer)
        } else if let value = context.request.cookies[ConsoleSessions.cookieName], let verified = sessions.verify(value)
        {
            guard case .session(let nonce) = verified.method else {
                return ConsoleResponse.text(500, "unexpected session").response(for: request)
            }
            do {
                let signedOut = try await console.database.withConnection {
                    try await ConsoleSignOuts($0).isSignedOut(nonce: nonce)
                }
                if !signedOut { context.identity = verified }
            } catch {
                console.logger.error("console: could not check a session", metadata: ["error": "\(error)"])
                return ConsoleResponse.text(503, "the database could not answer; see the worker's log")
                    .response(for: request)
            }
        }
        if context.identity == nil, sessions.tokens.isEmpty,
            let issued = sessions.issue(actor: ConsoleSessions.localActor)
        {
            context.identity = ConsoleIdentity(actor: ConsoleSessions.localActor, method: .session(nonce: issued.nonce))
            context.issuedSession = issued.value
        }
        guard context.identity != nil else {
            if request.method == .get { return ConsoleResponse.seeOther("/console/login").response(for: request) }
            return ConsoleResponse.text(401, "sign in first: a bearer token or the login form").response(for: request)
        }
        return try await next(request, context)
    }
}

/// A form or query field holding a control character is refused with 400 (see
/// ``ConsoleRequest/fieldWithControlCharacter``).
struct ConsoleFieldCheck: RouterMiddleware {
    let console: Console

    func handle(
        _ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response
    ) async throws -> Response {
        if let field = context.request.fieldWithControlCharacter {
            console.logger.warning(
                "console: a field with a control character was refused", metadata: ["field": "\(field)"])
            if request.method == .post {
                _ = await console.recordEvent(
                    context.signedIn.actor, context.path, detail: ["field": field],
                    outcome: "refused: control character in a field")
            }
            return ConsoleResponse.text(400, "refused: the field '\(field)' holds a control character")
                .response(for: request)
        }
        return try await next(request, context)
    }
}

/// A page (GET, HEAD) shows the last action's message once: read from its cookie, which the
/// answer clears.
struct ConsoleFlashCookie: RouterMiddleware {
    let console: Console

    func handle(
        _ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response
    ) async throws -> Response {
        guard request.method == .get || request.method == .head,
            let value = context.request.cookies[Console.flashCookie]
        else { return try await next(request, context) }
        var context = context
        context.flash = Flash(cookieValue: value)
        var response = try await next(request, context)
        response.append([console.cookie(Console.flashCookie, "", maxAge: 0, request: context.request)])
        return response
    }
}

/// Sends the cookie of a `local` session that ``ConsoleAuthentication`` issued for this request.
struct ConsoleSessionCookie: RouterMiddleware {
    let console: Console

    func handle(
        _ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response
    ) async throws -> Response {
        var response = try await next(request, context)
        if let issued = context.issuedSession {
            response.append([
                console.cookie(
                    ConsoleSessions.cookieName, issued, maxAge: Int(ConsoleSessions.lifetime), request: context.request)
            ])
        }
        return response
    }
}

/// Before an action: read-only mode refuses it, and a session's POST must carry its CSRF token
/// (a bearer request needs none). 403, audited.
struct ConsoleActionGuard: RouterMiddleware {
    let console: Console

    func handle(
        _ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response
    ) async throws -> Response {
        let identity = context.signedIn
        if console.readOnly {
            _ = await console.recordEvent(identity.actor, context.path, detail: [:], outcome: "refused: read-only")
            return ConsoleResponse.text(403, "this console is read-only").response(for: request)
        }
        guard console.sessions.checkCSRF(context.request.form["csrf"], for: identity) else {
            _ = await console.recordEvent(identity.actor, context.path, detail: [:], outcome: "refused: bad CSRF token")
            return ConsoleResponse.text(403, "missing or wrong CSRF token: reload the page and try again")
                .response(for: request)
        }
        return try await next(request, context)
    }
}
