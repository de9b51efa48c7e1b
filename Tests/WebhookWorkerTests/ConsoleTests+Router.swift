import Foundation
import Hummingbird
import Logging
@testable import TestSupport
import Testing
import WebhookDelivery

@testable import webhook_worker

/// The console's routes on Hummingbird's router: which checks each passes, and answering a
/// ``ConsoleRequest`` through them without a server (as the other console tests do).
extension Console {
    /// The console's routes on a router of their own, as the servers mount them under /console.
    func router() -> Router<ConsoleContext> {
        let router = Router(context: ConsoleContext.self)
        addRoutes(to: router.group("console"))
        return router
    }

    /// Answers `request` through the console's router (its middleware and handlers): the request
    /// made into HTTP (headers, query, form body) and the answer read back.
    func respond(_ request: ConsoleRequest) async -> ConsoleResponse {
        var fields = HTTPFields()
        if let authorization = request.authorization { fields[.authorization] = authorization }
        if !request.cookies.isEmpty {
            fields[.cookie] = request.cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
        }
        if request.crossSite { fields[.init("Sec-Fetch-Site")!] = "cross-site" }
        if request.forwardedHTTPS { fields[.init("X-Forwarded-Proto")!] = "https" }
        if let origin = request.origin { fields[.init("Origin")!] = origin }
        let query = Self.encode(request.query)
        let head = HTTPRequest(
            method: .init(request.method)!, scheme: "http", authority: request.host,
            path: request.path + (query.isEmpty ? "" : "?\(query)"), headerFields: fields)
        let context = ConsoleContext(coreContext: .init(source: ConsoleTestSource(logger: logger)))
        do {
            let response = try await router().buildResponder().respond(
                to: Request(head: head, body: .init(buffer: ByteBuffer(string: Self.encode(request.form)))),
                context: context)
            let body = BodyCollector()
            try await response.body.write(body)
            return ConsoleResponse(
                status: Int(response.status.code), headers: response.headers.map { ($0.name.rawName, $0.value) },
                body: String(buffer: body.buffer))
        } catch {
            return ConsoleResponse(status: 599, body: "the router threw: \(error)")
        }
    }

    /// Every field, empty ones too (unlike ``FormEncoding/encode(_:)``, made for links).
    private static func encode(_ fields: [String: String]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return fields.sorted { $0.key < $1.key }.map { name, value in
            "\(name.addingPercentEncoding(withAllowedCharacters: allowed)!)="
                + value.addingPercentEncoding(withAllowedCharacters: allowed)!
        }.joined(separator: "&")
    }
}

private struct ConsoleTestSource: RequestContextSource {
    let logger: Logger
}

private final class BodyCollector: ResponseBodyWriter {
    var buffer = ByteBuffer()
    func write(_ buffer: ByteBuffer) async throws { self.buffer.writeImmutableBuffer(buffer) }
    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}

extension ConsoleTests {
    /// A request path for a route's path: its parameters and wildcards filled in.
    static func example(_ path: RouterPath) -> String {
        "/"
            + path.components.map { component in
                switch component.description {
                case "**": "x/y"
                case "*": "x"
                case let text where text.hasPrefix("{"): "1"
                case let text: text
                }
            }.joined(separator: "/")
    }

    @Test("every route but the style sheet and signing in is behind authentication")
    func routesNeedAuthentication() async throws {
        try await Self.withConsole { console, database, _ in
            let routes = console.router().routes
            let described = Set(routes.map { "\($0.method) \($0.path)" })
            for route in [
                "GET /console", "HEAD /console/deliveries/{id}", "POST /console/dead-letters/retry",
                "POST /console/dead-letters/{id}/retry", "GET /console/dead-letters/retry", "POST /console/logout",
                "GET /console/**", "HEAD /console/**", "POST /console/**",
            ] {
                #expect(described.contains(route), "\(route) in \(described.sorted())")
            }
            let open = ["GET /console/style.css", "GET /console/login", "HEAD /console/login", "POST /console/login"]
            #expect(Set(open).isSubset(of: described))
            for route in routes {
                let name = "\(route.method) \(route.path)"
                let answer = await console.respond(
                    ConsoleRequest(method: route.method.rawValue, path: Self.example(route.path)))
                #expect(answer.header("X-Frame-Options") == "DENY", "\(name): the security headers")
                // What authentication answers a request that proved no identity.
                let refused =
                    route.method == .get
                    ? answer.status == 303 && answer.header("Location") == "/console/login"
                    : answer.status == 401
                        && answer.body
                            == (route.method == .head ? "" : "sign in first: a bearer token or the login form\n")
                #expect(refused == !open.contains(name), "\(name): \(answer.status) \(answer.body.prefix(80))")
            }
            // Only the sign-in without a token went further, and was refused there.
            let entries = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(entries.map(\.outcome) == ["refused: wrong token"])
        }
    }

    @Test("a path or a method with no handler: the Host check, authentication, then 404")
    func unknownPaths() async throws {
        try await Self.withConsole { console, database, _ in
            for path in ["/console/nowhere", "/console/deliveries/x/y/z", "/console/jobs/pause", "/console/logout"] {
                var evil = Self.get(path)
                evil.host = "evil.test"
                #expect(await console.respond(evil).status == 421, "\(path)")
                #expect(await console.respond(Self.get(path, bearer: nil)).status == 303, "\(path)")
                let page = await console.respond(Self.get(path))
                #expect(page.status == 404 && page.body.contains("No such page."), "\(path)")
                var head = Self.get(path)
                head.method = "HEAD"
                let headAnswer = await console.respond(head)
                #expect(headAnswer.status == 404 && headAnswer.body.isEmpty, "HEAD \(path)")
            }
            for path in ["/console/nowhere", "/console/deliveries", "/console/style.css"] {
                let post = await console.respond(Self.post(path, [:]))
                #expect(post.status == 404 && post.body == "no such action\n", "POST \(path)")
                #expect(await console.respond(ConsoleRequest(method: "POST", path: path)).status == 401, "\(path)")
            }
            // The GET of an action's path among the dead letters' ids reads as an id, as before the router.
            let retry = await console.respond(Self.get("/console/dead-letters/retry"))
            #expect(retry.status == 404 && retry.body.contains("&#39;retry&#39; is not a dead letter id"))
            // A malformed delivery id is refused before the action is looked up, and audited.
            let unknown = await console.respond(Self.post("/console/deliveries/not-an-id/frobnicate", [:]))
            #expect(unknown.status == 303)
            let entries = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(entries.map(\.outcome) == ["failed: 'not-an-id' is not a delivery id"])
        }
    }

    @Test("the jobs page offers the kinds the worker registers")
    func kindsFromTheRegistry() async throws {
        let sender = WebhookSender(configuration: .init())
        let handlers = WorkerHandlers.make(delivery: .init(), sender: sender)
        try await sender.shutdown()
        #expect(handlers.map(\.kind) == WorkerHandlers.kinds)
        try await Self.withConsole { console, _, _ in
            #expect(console.knownKinds == WorkerHandlers.kinds)
            let page = await console.respond(Self.get("/console/jobs"))
            for kind in WorkerHandlers.kinds { #expect(page.body.contains("<td>\(kind)</td>"), "\(kind)") }
        }
    }
}
