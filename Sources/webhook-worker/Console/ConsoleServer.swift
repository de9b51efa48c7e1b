import Foundation
import HTTPTypes
import Hummingbird
import LibPQ
import Logging
import NIOCore
import ServiceLifecycle

/// Serves a ``Console`` with Hummingbird: on a router of its own (`webhook-worker console`) or
/// on the operations server's (`run --console`).
enum ConsoleServer {
    /// Form bodies larger than this are refused (the console's forms are a few hundred bytes).
    static let maximumBody = 64 * 1024

    static func register(_ console: Console, on router: Router<BasicRequestContext>) {
        for path in ["console", "console/**"] {
            router.get(RouterPath(path)) { request, _ in await handle(console, request) }
            router.head(RouterPath(path)) { request, _ in await handle(console, request) }
            router.post(RouterPath(path)) { request, _ in await handle(console, request) }
        }
    }

    static func handle(_ console: Console, _ request: Request) async -> Response {
        var consoleRequest = ConsoleRequest(method: request.method.rawValue, path: request.uri.path)
        consoleRequest.query = FormEncoding.decode(request.uri.query ?? "")
        consoleRequest.authorization = request.headers[.authorization]
        consoleRequest.cookies = FormEncoding.cookies(request.headers[values: .cookie])
        consoleRequest.crossSite = request.headers[HTTPField.Name("Sec-Fetch-Site")!]?.lowercased() == "cross-site"
        consoleRequest.forwardedHTTPS = request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
        // HTTP/1.1's Host header arrives as the request's authority.
        consoleRequest.host = request.head.authority ?? request.headers[HTTPField.Name("Host")!]
        consoleRequest.origin = request.headers[HTTPField.Name("Origin")!]
        if request.method == .post {
            guard let body = try? await request.body.collect(upTo: maximumBody) else {
                return Response(status: .contentTooLarge)
            }
            consoleRequest.form = FormEncoding.decode(String(buffer: body))
        }
        let answer = await console.respond(consoleRequest)
        var headers = HTTPFields()
        for (name, value) in answer.headers {
            if let field = HTTPField.Name(name) { headers.append(HTTPField(name: field, value: value)) }
        }
        return Response(
            status: HTTPResponse.Status(code: answer.status), headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: request.method == .head ? "" : answer.body)))
    }

    /// `webhook-worker console`'s own server: the console under /console, / redirected to it.
    /// `onListening` is called once the socket is bound, with the port it got (`port` 0 picks one).
    static func make(
        console: Console, host: String, port: Int, logger: Logger,
        onListening: @escaping @Sendable (_ port: Int) async -> Void = { _ in }
    ) -> some Service {
        let router = Router()
        router.get("/") { _, _ in Response(status: .seeOther, headers: [.location: "/console"]) }
        register(console, on: router)
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port)),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) }, logger: logger)
    }

    /// Whether `host` names this machine only (127.0.0.0/8, ::1, localhost).
    static func isLoopback(_ host: String) -> Bool {
        let host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}
