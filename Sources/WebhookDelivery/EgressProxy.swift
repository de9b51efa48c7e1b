import Foundation

/// An HTTP proxy that every delivery goes through (`WEBHOOK_PROXY_URL`), so that receivers see
/// connections from the proxy's fixed addresses (smokescreen, squid, tinyproxy): the worker
/// opens a tunnel with `CONNECT` for http and https webhook URLs alike.
///
/// The worker resolves the webhook URL's host itself, checks every address against the
/// ``NetworkPolicy``, and asks the proxy to `CONNECT` to a checked address, never to the name: a
/// proxy that resolved the name again could be led to a refused address (DNS rebinding). The
/// request inside the tunnel keeps the URL's `Host` and, for https, its TLS server name and
/// certificate check. See ``WebhookSender`` for the exchange.
public struct EgressProxy: Sendable, Equatable {
    /// The proxy's host name or address, as the URL gives it (without brackets).
    public let host: String
    public let port: Int
    /// `Basic ...` for the URL's user name and password; nil without credentials.
    let authorization: String?
    /// The URL as logs may show it: credentials masked (``URLRedaction``).
    public let redactedURL: String

    /// Why a proxy URL is not usable: the rest of a setting's error line, never the credentials.
    public struct InvalidURL: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// Parses `http://[user:password@]host[:port]`; the port defaults to 80.
    public init(url: String) throws(InvalidURL) {
        let shown = URLRedaction.redacted(url)
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased() else {
            throw InvalidURL(description: "'\(shown)': expected a URL such as http://127.0.0.1:8888")
        }
        guard scheme == "http" else {
            throw InvalidURL(
                description:
                    "'\(shown)': the proxy is spoken to in plain HTTP (CONNECT), so its URL starts with http://")
        }
        guard var host = components.host, !host.isEmpty else {
            throw InvalidURL(description: "'\(shown)': the proxy URL has no host")
        }
        guard components.percentEncodedPath.isEmpty || components.percentEncodedPath == "/",
            components.percentEncodedQuery == nil, components.fragment == nil
        else {
            throw InvalidURL(description: "'\(shown)': a proxy URL has no path, query or fragment")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host
        self.port = components.port ?? 80
        if components.user != nil || components.password != nil {
            let credentials = "\(components.user ?? ""):\(components.password ?? "")"
            self.authorization = "Basic " + Data(credentials.utf8).base64EncodedString()
        } else {
            self.authorization = nil
        }
        self.redactedURL = shown
    }

    /// `host:port`, brackets around an IPv6 address: the proxy in messages.
    var authority: String { Self.authority(host: host, port: port) }

    static func authority(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The proxy answered `CONNECT` with a status other than 2xx. A 4xx (403 from an allow-list,
    /// 407) is the proxy's policy: permanent, as the worker's own policy refusals are. A 5xx says
    /// the proxy could not reach the receiver: a connection failure, retried.
    struct Refused: Error, Sendable, CustomStringConvertible {
        let status: Int
        let reason: String
        let target: String

        var errorClass: DeliveryErrorClass { status >= 500 ? .connectFailed : .policyRefused }
        var description: String {
            status >= 500
                ? "the egress proxy could not connect to \(target): \(status) \(reason)"
                : "the egress proxy refused CONNECT to \(target): \(status) \(reason)"
        }
    }

    /// The proxy could not be reached, or closed the connection before answering `CONNECT`.
    struct Unreachable: Error, Sendable, CustomStringConvertible {
        let proxy: String
        let underlying: any Error
        var description: String { "the egress proxy \(proxy): \(WebhookSender.classify(underlying).1)" }
        var errorClass: DeliveryErrorClass {
            let underlyingClass = WebhookSender.classify(underlying).0
            return underlyingClass == .timeout ? .timeout : .connectFailed
        }
    }
}
