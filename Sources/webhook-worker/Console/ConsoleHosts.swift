import Foundation

/// The host names the console answers to (the `Host` header), against DNS rebinding: a page on
/// `attacker.example` whose name re-resolves to 127.0.0.1 is same-origin to the browser, which
/// then sends its requests to the console with `Host: attacker.example`. The console answers
/// only loopback names (`localhost`, 127.0.0.0/8, `[::1]`), the address it is bound to, and the
/// names the operator lists (`--allowed-host`, `WORKER_CONSOLE_ALLOWED_HOSTS`), on any port.
/// A request without `Host` is answered: no browser sends one (HTTP/1.1 requires it), so no page
/// can make one.
struct ConsoleHosts: Sendable, Equatable {
    /// Lowercased names without port or brackets, besides the loopback ones.
    let allowed: Set<String>

    /// - Parameters:
    ///   - bound: the address the console listens on; a wildcard (`0.0.0.0`, `::`) names no host.
    ///   - listed: names from ``parse(_:setting:)``.
    init(bound: String = "127.0.0.1", listed: [String] = []) {
        var allowed = Set(listed)
        if let name = Self.name(inHost: bound)?.name, !["0.0.0.0", "::", "0:0:0:0:0:0:0:0"].contains(name) {
            allowed.insert(name)
        }
        self.allowed = allowed
    }

    /// Whether a request whose `Host` header is `host` may be answered.
    func allows(host: String?) -> Bool {
        guard let host else { return true }
        guard let name = Self.name(inHost: host)?.name else { return false }
        return ConsoleServer.isLoopback(name) || allowed.contains(name)
    }

    /// Whether an `Origin` header (`scheme://host[:port]`, or `null`) names a page of the console.
    func allows(origin: String) -> Bool {
        guard let separator = origin.range(of: "://") else { return false }
        let scheme = origin[..<separator.lowerBound].lowercased()
        let authority = String(origin[separator.upperBound...])
        return (scheme == "http" || scheme == "https") && !authority.isEmpty && allows(host: authority)
    }

    /// The name (lowercased, without brackets or a final dot) and whether a port followed, of a
    /// `Host` value: `name`, `name:port`, `[v6]`, `[v6]:port`; nil for anything else.
    static func name(inHost host: String) -> (name: String, hasPort: Bool)? {
        var name = Substring(host.lowercased())
        var port: Substring?
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]") else { return nil }
            let rest = name[name.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return nil }
                port = rest.dropFirst()
            }
            name = name[name.index(after: name.startIndex)..<close]
            guard !name.isEmpty, name.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
        } else {
            // A bare IPv6 address (a bound address may be one) has several colons; a name has at most one.
            if name.filter({ $0 == ":" }).count == 1, let colon = name.lastIndex(of: ":") {
                port = name[name.index(after: colon)...]
                name = name[..<colon]
            }
            if name.hasSuffix(".") { name = name.dropLast() }
            let characters = name.contains(":") ? "0123456789abcdef:." : "abcdefghijklmnopqrstuvwxyz0123456789-._"
            guard !name.isEmpty, name.count <= 253, name.allSatisfy({ characters.contains($0) }) else { return nil }
        }
        if let port {
            guard !port.isEmpty, port.count <= 5, port.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        }
        return (String(name), port != nil)
    }

    /// The names of `--allowed-host` options or of `WORKER_CONSOLE_ALLOWED_HOSTS` (comma-separated).
    static func parse(_ entries: [String], setting: String) throws -> [String] {
        try entries.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.map { entry in
                guard let parsed = name(inHost: entry), !parsed.hasPort else {
                    throw SettingError(
                        description: "invalid \(setting) '\(entry)': expected host names without a port, like "
                            + "console.example.com")
                }
                return parsed.name
            }
    }
}
