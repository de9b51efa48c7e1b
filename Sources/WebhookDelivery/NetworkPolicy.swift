import Foundation
import NIOCore
import Synchronization

/// Which destinations a webhook may be sent to. On by default: HTTPS only, and no host that
/// resolves to an internal address (see ``IPAddressClass``).
///
/// The check runs twice. Before a request, the URL's host is resolved and every address it
/// resolves to must be allowed, so a refused destination is never connected to. Then, for every
/// connection the HTTP client opens, the peer address actually connected to is checked again
/// before any request is written on it: a name that resolves differently the second time (DNS
/// rebinding) is caught there.
public struct NetworkPolicy: Sendable {
    public var allowHTTP: Bool
    public var allowPrivateNetworks: Bool

    /// Resolves a host before the request; the system's resolver unless a test replaces it (to
    /// stage a name that resolves differently for the check and for the connection).
    var resolver: @Sendable (_ host: String, _ port: Int) async throws -> [ResolvedAddress] = Self.resolve

    public init(allowHTTP: Bool, allowPrivateNetworks: Bool) {
        self.allowHTTP = allowHTTP
        self.allowPrivateNetworks = allowPrivateNetworks
    }

    /// Why a destination was refused; permanent, since retrying would change nothing.
    public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        /// `invalid_url` for a URL that is not an http(s) URL with a host, else `policy_refused`.
        public var errorClass = DeliveryErrorClass.policyRefused
    }

    /// Checks a URL's scheme and shape (no network access). Returns the host and port.
    public func checkURL(_ url: String) throws(Refusal) -> (scheme: String, host: String, port: Int) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            throw Refusal(description: "the webhook URL is not a valid URL", errorClass: .invalidURL)
        }
        guard scheme == "https" || scheme == "http" else {
            throw Refusal(
                description: "the webhook URL's scheme '\(scheme)' is not http or https", errorClass: .invalidURL)
        }
        if scheme == "http" && !allowHTTP {
            throw Refusal(description: "the webhook URL is http://; only https:// is allowed (see --allow-http)")
        }
        guard var host = components.host, !host.isEmpty else {
            throw Refusal(description: "the webhook URL has no host", errorClass: .invalidURL)
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (scheme, host, components.port ?? (scheme == "https" ? 443 : 80))
    }

    /// Checks every address the host resolves to. Throws ``Refusal`` for internal addresses,
    /// and rethrows resolution failures (which may be transient) as ``ResolutionFailure``.
    public func checkDestination(host: String, port: Int) async throws -> [String] {
        if allowPrivateNetworks { return [] }
        let addresses = try await resolver(host, port)
        for address in addresses {
            let kind = IPAddressClass.of(address.bytes)
            if kind.isInternal {
                throw Refusal(
                    description:
                        """
                        the webhook host \(host) resolves to \(address.text), a \(kind.rawValue) address; internal \
                        destinations are refused (see --allow-private-networks)
                        """
                )
            }
        }
        return addresses.map(\.text)
    }

    /// The addresses `host` resolves to, each checked as ``checkDestination(host:port:)`` checks
    /// them (unless private networks are allowed): the addresses an egress proxy may be asked to
    /// connect to. Resolved even when private networks are allowed, as the proxy gets an address.
    public func checkedAddresses(host: String, port: Int) async throws -> [String] {
        if allowPrivateNetworks { return try await resolver(host, port).map(\.text) }
        return try await checkDestination(host: host, port: port)
    }

    /// Checks the peer of an open connection; nil when allowed.
    public func refusal(forPeer address: SocketAddress?) -> Refusal? {
        guard !allowPrivateNetworks else { return nil }
        guard let address else { return Refusal(description: "the connection has no peer address") }
        let bytes: [UInt8]
        switch address {
        case .v4(let v4):
            bytes = withUnsafeBytes(of: v4.address.sin_addr) { Array($0) }
        case .v6(let v6):
            bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
        case .unixDomainSocket:
            return Refusal(description: "the connection is to a unix domain socket")
        }
        let kind = IPAddressClass.of(bytes)
        guard kind.isInternal else { return nil }
        return Refusal(description: "connected to \(address.ipAddress ?? "?"), a \(kind.rawValue) address; refused")
    }

    public struct ResolutionFailure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    struct ResolvedAddress: Sendable {
        let bytes: [UInt8]
        let text: String
    }

    /// getaddrinfo blocks, so it runs on a dispatch thread, not on a cooperative one. It cannot be
    /// interrupted, so cancelling the task (the request's deadline) releases the caller at once
    /// with `CancellationError` and the lookup's late answer is dropped.
    static func resolve(host: String, port: Int) async throws -> [ResolvedAddress] {
        let answer = OneAnswer<[ResolvedAddress]>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard answer.wait(continuation) else { return }
                DispatchQueue.global().async {
                    answer.give(Result { try resolveBlocking(host: host, port: port) })
                }
            }
        } onCancel: {
            answer.give(.failure(CancellationError()))
        }
    }

    static func resolveBlocking(host: String, port: Int) throws -> [ResolvedAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let first = result else {
            let reason = String(cString: gai_strerror(status))
            throw ResolutionFailure(description: "could not resolve \(host): \(reason)")
        }
        defer { freeaddrinfo(first) }
        var addresses: [ResolvedAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            if let sockaddr = entry.pointee.ai_addr {
                if entry.pointee.ai_family == AF_INET {
                    let address = sockaddr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                    let bytes = withUnsafeBytes(of: address) { Array($0) }
                    addresses.append(.init(bytes: bytes, text: bytes.map(String.init).joined(separator: ".")))
                } else if entry.pointee.ai_family == AF_INET6 {
                    var address = sockaddr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        $0.pointee.sin6_addr
                    }
                    let bytes = withUnsafeBytes(of: address) { Array($0) }
                    var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                    inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count))
                    let text = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
                    addresses.append(.init(bytes: bytes, text: String(decoding: text, as: UTF8.self)))
                }
            }
            cursor = entry.pointee.ai_next
        }
        guard !addresses.isEmpty else { throw ResolutionFailure(description: "\(host) has no addresses") }
        return addresses
    }
}

/// The first of two racing answers (a blocking lookup and cancellation) resumes the caller; the
/// other is dropped.
final class OneAnswer<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var early: Result<T, any Error>?
        var answered = false
    }
    private let state = Mutex(State())

    /// Returns false when an answer (cancellation) came first: the caller is resumed already.
    func wait(_ continuation: CheckedContinuation<T, any Error>) -> Bool {
        let early = state.withLock { state -> Result<T, any Error>? in
            if let early = state.early { return early }
            state.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
        return early == nil
    }

    func give(_ result: Result<T, any Error>) {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            guard !state.answered else { return nil }
            state.answered = true
            guard let continuation = state.continuation else {
                state.early = result
                return nil
            }
            state.continuation = nil
            return continuation
        }
        continuation?.resume(with: result)
    }
}
