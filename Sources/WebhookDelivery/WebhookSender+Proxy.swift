import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Deliveries through the egress proxy (``EgressProxy``).
///
/// Why not AsyncHTTPClient's own proxy support (`HTTPClient.Configuration.Proxy`): it does open
/// a `CONNECT` tunnel for http and https alike, but to the host of the request's URL, so the
/// proxy would resolve the name again and could be led to an address our policy refuses (DNS
/// rebinding). The one way to make it connect to an address while keeping the name for SNI and
/// the certificate check is `Configuration.dnsOverride`, which is fixed for the client's
/// lifetime; there is no per-request override (async-http-client issue #866), and a client per
/// resolved address would mean a connection pool per destination to create and shut down. Its
/// peer check (`http1_1ConnectionDebugInitializer`) would see the proxy's address, and a proxy's
/// refusal arrives as `invalidProxyResponse` without its status, so a 403 (the proxy's policy)
/// could not be told from a 502 (the receiver unreachable). So the tunnel is ours: resolve and
/// check here, `CONNECT` to a checked address, then TLS with the URL's host as server name and
/// one HTTP/1.1 exchange with the URL's `Host`, on NIO's codecs.
///
/// Each delivery opens its own tunnel and closes it after the response (`Connection: close`):
/// nothing is pooled, so every delivery through the proxy pays a connection to the proxy and,
/// for https, a TLS handshake with the receiver.
extension WebhookSender {
    func exchangeThroughProxy(
        _ proxy: EgressProxy, url: String, target: (scheme: String, host: String, port: Int),
        headers: [(String, String)], body: [UInt8], answered: AnsweredSoFar
    ) async throws -> (Int, HTTPHeaders, [UInt8]) {
        guard let components = URLComponents(string: url) else {
            throw NetworkPolicy.Refusal(description: "the webhook URL is not a valid URL", errorClass: .invalidURL)
        }
        let isHTTPS = target.scheme == "https"
        let hostIsAddress = target.host.contains(":") || target.host.allSatisfy { $0.isNumber || $0 == "." }
        if isHTTPS && hostIsAddress {
            // NIOSSL checks a certificate against an address by the connection's peer, which is the
            // proxy here; it cannot be told the receiver's.
            throw TunnelFailure(
                errorClass: .tls,
                description: "an https URL with an IP address cannot be checked through the egress proxy; use a name")
        }
        let addresses = try await policy.checkedAddresses(host: target.host, port: target.port)
        var path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        if let query = components.percentEncodedQuery { path += "?" + query }
        let defaultPort = isHTTPS ? 443 : 80
        let hostHeader =
            (target.host.contains(":") ? "[\(target.host)]" : target.host)
            + (target.port == defaultPort ? "" : ":\(target.port)")

        var lastFailure: (any Error)?
        for address in addresses {
            let tunnel: TunnelChannel
            do {
                tunnel = try await openTunnel(
                    through: proxy, to: EgressProxy.authority(host: address, port: target.port),
                    serverName: isHTTPS ? target.host : nil)
            } catch let refused as EgressProxy.Refused where refused.errorClass == .connectFailed {
                // The proxy could not reach this address; the next may do.
                lastFailure = refused
                continue
            }
            var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
            head.headers.add(name: "Host", value: hostHeader)
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            head.headers.add(name: "Content-Length", value: String(body.count))
            head.headers.add(name: "Connection", value: "close")
            return try await exchange(on: tunnel, head: head, body: body, answered: answered)
        }
        throw lastFailure ?? NetworkPolicy.ResolutionFailure(description: "\(target.host) has no addresses")
    }

    /// Writes the request and reads the status, the headers and at most `maxResponseBytes` of the
    /// body; the tunnel is closed afterwards.
    ///
    /// The connection can end before this task gets to write: the receiver refused our TLS
    /// handshake (which ran on the event loop as soon as the tunnel was up), or it already
    /// answered and closed (it has the request once the body is in, whatever `.end` adds). A write
    /// then fails with "I/O on closed channel", which says nothing of what happened; the inbound
    /// side has the answer or the real error (the TLS failure), so it is read whatever the write
    /// did, and the write's error is reported only when nothing came back.
    func exchange(
        on tunnel: TunnelChannel, head: HTTPRequestHead, body: [UInt8], answered: AnsweredSoFar
    ) async throws -> (Int, HTTPHeaders, [UInt8]) {
        let limit = configuration.maxResponseBytes
        return try await tunnel.executeThenClose { inbound, outbound in
            var writeFailure: (any Error)?
            do {
                try await outbound.write(contentsOf: [
                    .head(head), .body(.byteBuffer(ByteBuffer(bytes: body))), .end(nil),
                ])
            } catch {
                writeFailure = error
            }
            var response: HTTPResponseHead?
            var collected: [UInt8] = []
            reading: for try await part in inbound {
                switch part {
                case .head(let received):
                    response = received
                    answered.value.withLock { $0 = (Int(received.status.code), []) }
                case .body(let chunk):
                    guard let response else { continue }
                    collected.append(contentsOf: chunk.readableBytesView.prefix(limit - collected.count))
                    answered.value.withLock { $0 = (Int(response.status.code), collected) }
                    if collected.count >= limit { break reading }
                case .end:
                    break reading
                }
            }
            guard let response else { throw writeFailure ?? HTTPClientError.remoteConnectionClosed }
            return (Int(response.status.code), response.headers, collected)
        }
    }

    /// Connects to the proxy, asks it for a tunnel to `target` (an address), and sets up TLS
    /// (with `serverName`, for https) and HTTP/1.1 inside it. Cancelling the task closes the
    /// connection at whatever step it is.
    private func openTunnel(
        through proxy: EgressProxy, to target: String, serverName: String?
    ) async throws
        -> TunnelChannel
    {
        let sslContext: NIOSSLContext?
        if serverName != nil {
            guard let context = tunnelTLS else {
                throw TunnelFailure(errorClass: .tls, description: "TLS could not be set up for the egress proxy")
            }
            sslContext = context
        } else {
            sslContext = nil
        }
        let loop = eventLoopGroup.next()
        let established = loop.makePromise(of: TunnelChannel.self)
        let opened = OpenedChannel()
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.milliseconds(configuration.connectTimeout.totalMilliseconds))
            .channelInitializer { channel in
                opened.set(channel)
                return channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(HTTPRequestEncoder(), name: ProxyConnectHandler.encoderName)
                    try pipeline.addHandler(
                        ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .fireError)),
                        name: ProxyConnectHandler.decoderName)
                    try pipeline.addHandler(
                        ProxyConnectHandler(target: target, proxy: proxy, established: established) { channel in
                            try Self.setUpTunnel(on: channel, tls: sslContext, serverName: serverName)
                        })
                }
            }
        return try await withTaskCancellationHandler {
            do {
                _ = try await bootstrap.connect(host: proxy.host, port: proxy.port).get()
            } catch {
                established.fail(EgressProxy.Unreachable(proxy: proxy.authority, underlying: error))
            }
            return try await established.futureResult.get()
        } onCancel: {
            opened.close()
        }
    }
}

extension WebhookSender {
    /// The pipeline inside an open tunnel: TLS (with `serverName`) when `tls` is given, then
    /// HTTP/1.1; the request's task speaks to it through the returned channel.
    static func setUpTunnel(on channel: any Channel, tls: NIOSSLContext?, serverName: String?) throws -> TunnelChannel {
        let pipeline = channel.pipeline.syncOperations
        if let tls { try pipeline.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName)) }
        try pipeline.addHTTPClientHandlers()
        return try TunnelChannel(wrappingChannelSynchronously: channel)
    }
}

/// A failure of the proxied path that is not the proxy's nor the network's.
struct TunnelFailure: Error, Sendable, CustomStringConvertible {
    let errorClass: DeliveryErrorClass
    let description: String
}

/// The connection to the proxy once it exists, so that cancellation can close it.
final class OpenedChannel: Sendable {
    private let state = Mutex<(channel: (any Channel)?, closed: Bool)>((nil, false))

    func set(_ channel: any Channel) {
        let closeNow = state.withLock { state in
            state.channel = channel
            return state.closed
        }
        if closeNow { channel.close(promise: nil) }
    }

    func close() {
        let channel = state.withLock { state in
            state.closed = true
            return state.channel
        }
        channel?.close(promise: nil)
    }
}
