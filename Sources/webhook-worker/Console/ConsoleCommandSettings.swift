import Foundation

/// Every setting of `console`, each declared once, in the order of its table in
/// docs/operations.md (as ``RunSettings`` declares `run`'s). `run --console` reads the token and
/// the allowed hosts' variable too.
enum ConsoleCommandSettings {
    static let all: [Setting] = [host, port, readOnly, allowedHost, token]

    static let host = Setting(
        flag: "host", variable: "WORKER_CONSOLE_HOST",
        .text(problem: { address in
            address.isEmpty || address.count > 255 || address.contains(where: { $0.isWhitespace || $0 == "/" })
                ? " '\(address)': expected an address" : nil
        }),
        default: .value("127.0.0.1"),
        summary: "Address to listen on; one that is not loopback needs WORKER_CONSOLE_TOKEN.")
    static let port = Setting(
        flag: "port", variable: "WORKER_CONSOLE_PORT", .integer(1...65535), default: .value("8090"),
        summary: "Port to listen on.")
    static let readOnly = Setting(
        flag: "read-only", variable: "WORKER_CONSOLE_READ_ONLY", .toggle, default: .absent("off"),
        summary: "Pages only: no action buttons, every POST refused with 403.")
    static let allowedHost = Setting(
        flag: "allowed-host", variable: "WORKER_CONSOLE_ALLOWED_HOSTS", .list,
        default: .absent("none: loopback names and the listening address only"),
        summary: """
            A host name browsers reach the console by (a proxy's or a port-forward's), answered besides \
            localhost, 127.0.0.1, [::1] and --host; the flag is not on run, the variable is.
            """)
    static let token = Setting(
        flag: "console-token", variable: "WORKER_CONSOLE_TOKEN", .text(problem: { _ in nil }),
        default: .absent("unset: no token, loopback only"),
        summary: """
            name:secret pairs separated by commas (a bare secret is named operator): with it, every page and \
            action needs a token; run --console reads it too.
            """,
        docs: "See [Tokens](#the-web-console).", environmentOnly: true)
}
