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

    /// Mounts the console's routes (``Console/addRoutes(to:)``) under /console on `router`.
    static func register(_ console: Console, on router: Router<BasicRequestContext>) {
        console.addRoutes(to: router.group("console", context: ConsoleContext.self))
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
