import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// What the console's middleware learn about a request, for the middleware and handler after
/// them: the request as the console reads it, who is asking, and the flash message to show.
///
/// A child of the server's context: ``ConsoleServer/register(_:on:)`` mounts the console's
/// routes in a group of that context, each request's context made from the server's.
struct ConsoleContext: ChildRequestContext {
    var coreContext: CoreRequestContextStorage
    /// The request's fields, cookies and headers (``ConsoleRequestReader``).
    var request = ConsoleRequest(method: "", path: "")
    /// The path without its trailing slashes: what pages, audit rows and log lines name.
    var path = ""
    /// Who is asking (``ConsoleAuthentication``); set on every route behind it.
    var identity: ConsoleIdentity?
    /// The cookie value of a `local` session issued for this request (a console without tokens),
    /// sent with the answer by ``ConsoleSessionCookie``.
    var issuedSession: String?
    /// The message of the last action, read from its cookie by ``ConsoleFlashCookie``.
    var flash: Flash?

    init(context: BasicRequestContext) {
        self.coreContext = context.coreContext
    }

    /// A context of no server's, to call the console's router directly.
    init(coreContext: CoreRequestContextStorage) {
        self.coreContext = coreContext
    }

    /// Who is asking, on a route behind ``ConsoleAuthentication`` (which answers the others).
    var signedIn: ConsoleIdentity {
        guard let identity else { preconditionFailure("a console route behind no authentication: \(path)") }
        return identity
    }
}

/// The first of the console's middleware: reads the request as ``ConsoleRequest`` into the
/// context (a POST's form among it, refused with 413 beyond ``ConsoleServer/maximumBody``).
struct ConsoleRequestReader: RouterMiddleware {
    func handle(
        _ request: Request, context: ConsoleContext, next: (Request, ConsoleContext) async throws -> Response
    ) async throws -> Response {
        var context = context
        var read = ConsoleRequest(method: request.method.rawValue, path: request.uri.path)
        read.query = FormEncoding.decode(request.uri.query ?? "")
        read.authorization = request.headers[.authorization]
        read.cookies = FormEncoding.cookies(request.headers[values: .cookie])
        read.crossSite = request.headers[HTTPField.Name("Sec-Fetch-Site")!]?.lowercased() == "cross-site"
        read.forwardedHTTPS = request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
        // HTTP/1.1's Host header arrives as the request's authority.
        read.host = request.head.authority ?? request.headers[HTTPField.Name("Host")!]
        read.origin = request.headers[HTTPField.Name("Origin")!]
        if request.method == .post {
            guard let body = try? await request.body.collect(upTo: ConsoleServer.maximumBody) else {
                return Response(status: .contentTooLarge)
            }
            read.form = FormEncoding.decode(String(buffer: body))
        }
        var path = read.path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        context.request = read
        context.path = path
        return try await next(request, context)
    }
}

extension ConsoleResponse: ResponseGenerator {
    func response(from request: Request, context: some RequestContext) -> Response {
        response(for: request)
    }

    /// The Hummingbird response; without a body for HEAD.
    func response(for request: Request) -> Response {
        var response = Response(
            status: HTTPResponse.Status(code: status),
            body: .init(byteBuffer: ByteBuffer(string: request.method == .head ? "" : body)))
        response.append(headers)
        return response
    }
}

extension Response {
    /// Adds `headers` after those it has (a name HTTP does not allow is left out).
    mutating func append(_ headers: [(String, String)]) {
        for (name, value) in headers {
            if let field = HTTPField.Name(name) { self.headers.append(HTTPField(name: field, value: value)) }
        }
    }
}
