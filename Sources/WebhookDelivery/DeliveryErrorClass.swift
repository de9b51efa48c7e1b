import LibPQ

/// Why an attempt got no HTTP response: stored in `delivery_attempts.error_class` and logged as
/// `error.class`. The raw values are the stored strings; new cases may appear in later releases,
/// so readers of stored rows treat the column as text.
public enum DeliveryErrorClass: String, Sendable, CaseIterable, CustomStringConvertible, PQEncodable {
    /// The request, the connection or the TLS handshake ran past its deadline.
    case timeout
    /// Nothing accepted the connection (refused, unreachable).
    case connectFailed = "connect_failed"
    /// The host name did not resolve.
    case dns
    /// The TLS handshake failed (an untrusted certificate, a wrong host name, no common protocol).
    case tls
    /// The receiver closed or reset the connection before a status line arrived.
    case connectionReset = "connection_reset"
    /// The network policy refused the destination. Permanent.
    case policyRefused = "policy_refused"
    /// The webhook URL is not an http(s) URL with a host. Permanent.
    case invalidURL = "invalid_url"
    /// Anything else.
    case error

    public var description: String { rawValue }
    public var postgresText: String? { rawValue }

    /// Retrying cannot help: the URL or its destination must change first.
    public var isPermanent: Bool { self == .policyRefused || self == .invalidURL }
}
