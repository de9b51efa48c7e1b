import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
@testable import TestSupport
import Testing
@testable import WebhookDelivery
import WebhookReceiver

/// Deliveries through a real HTTP proxy on loopback (tinyproxy, ``TestTinyproxy``), which
/// connects to receivers from 127.0.0.2.
@Suite("Egress proxy", .timeLimit(.minutes(4)))
struct EgressProxyTests {
    /// A sender through `proxy` whose resolver answers 127.0.0.1 for every name, as a name of a
    /// receiver on loopback would resolve.
    static func sender(
        proxy: String, allowPrivateNetworks: Bool = true, tls: TLSConfiguration = .makeClientConfiguration()
    ) throws -> WebhookSender {
        var configuration = WebhookDeliveryConfiguration(
            requestTimeout: .seconds(10), connectTimeout: .seconds(5), allowHTTP: true,
            allowPrivateNetworks: allowPrivateNetworks)
        configuration.proxy = try EgressProxy(url: proxy)
        var policy = NetworkPolicy(allowHTTP: true, allowPrivateNetworks: allowPrivateNetworks)
        policy.resolver = { _, _ in [.init(bytes: [127, 0, 0, 1], text: "127.0.0.1")] }
        return WebhookSender(
            configuration: configuration, policy: policy, eventLoopGroup: HTTPClient.defaultEventLoopGroup, tls: tls)
    }

    @Test("a delivery goes through the proxy to the checked address, with the URL's Host, path and body")
    func deliveredThroughProxy() async throws {
        let receiver = try await WebhookReceiverServer.start { _ in .status(200, body: "thanks") }
        let proxy = try await TestTinyproxy.start()
        let sender = try Self.sender(proxy: proxy.url)
        let result = await sender.post(
            url: "http://receiver.test:\(receiver.port)/hooks/in?x=1", headers: [("X-Test", "yes")],
            body: Array("{\"a\":1}".utf8), logger: TestDatabase.logger)
        try await sender.shutdown()
        let targets = proxy.connectTargets
        await proxy.stop()
        await receiver.stop()

        #expect(result.status == 200, "\(result)")
        #expect(result.excerpt == "thanks")
        let received = try #require(receiver.received.first)
        #expect(received.peerAddress == "127.0.0.2", "the receiver saw the proxy's connection")
        #expect(received.header("Host") == "receiver.test:\(receiver.port)")
        #expect(received.uri == "/hooks/in?x=1")
        #expect(received.header("X-Test") == "yes")
        #expect(received.body == Array("{\"a\":1}".utf8))
        // The proxy was asked for the address the worker resolved, never the name.
        #expect(targets == ["127.0.0.1:\(receiver.port)"])
    }

    @Test("https through the proxy: TLS inside the tunnel, checked against the URL's host name")
    func httpsThroughProxy() async throws {
        let serverTLS = try selfSignedTLS()
        let receiver = try await WebhookReceiverServer.start(tls: serverTLS)
        let proxy = try await TestTinyproxy.start()
        var trusting = TLSConfiguration.makeClientConfiguration()
        trusting.trustRoots = .certificates(
            serverTLS.certificateChain.compactMap {
                if case .certificate(let certificate) = $0 { return certificate }
                return nil
            })
        let sender = try Self.sender(proxy: proxy.url, tls: trusting)
        let result = await sender.post(
            url: "https://localhost:\(receiver.port)/tls", headers: [], body: Array("{}".utf8),
            logger: TestDatabase.logger)
        // Without the certificate trusted, the same exchange fails as TLS does.
        let untrusting = try Self.sender(proxy: proxy.url)
        let untrusted = await untrusting.post(
            url: "https://localhost:\(receiver.port)/tls", headers: [], body: Array("{}".utf8),
            logger: TestDatabase.logger)
        try await sender.shutdown()
        try await untrusting.shutdown()
        let targets = proxy.connectTargets
        await proxy.stop()
        await receiver.stop()

        #expect(result.status == 200, "\(result)")
        #expect(receiver.received.first?.peerAddress == "127.0.0.2")
        #expect(receiver.received.first?.header("Host") == "localhost:\(receiver.port)")
        #expect(untrusted.errorClass == .tls, "\(untrusted)")
        #expect(receiver.received.count == 1)
        #expect(targets == ["127.0.0.1:\(receiver.port)", "127.0.0.1:\(receiver.port)"])
    }

    /// The race behind a flaky "https through the proxy": the tunnel's TLS handshake runs on the
    /// event loop as soon as the tunnel is up, so the receiver can refuse it, and the connection
    /// end, before the request's task writes anything. Here that order is forced: the exchange
    /// starts only once the connection is closed, and must still report the TLS failure.
    @Test("a tunnel whose TLS handshake failed before the request was written reports tls, not a closed channel")
    func handshakeFailedBeforeWrite() async throws {
        let receiver = try await WebhookReceiverServer.start(tls: try selfSignedTLS())
        let sender = try Self.sender(proxy: "http://127.0.0.1:1")
        // The default trust roots: the receiver's self-signed certificate is refused.
        let untrusting = try NIOSSLContext(configuration: .makeClientConfiguration())
        let tunnel = try await ClientBootstrap(group: HTTPClient.defaultEventLoopGroup)
            .connect(host: "127.0.0.1", port: receiver.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try WebhookSender.setUpTunnel(on: channel, tls: untrusting, serverName: "localhost")
                }
            }
        try await tunnel.channel.closeFuture.get()
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: "/")
        head.headers.add(name: "Host", value: "localhost")
        var failure: (any Error)?
        do {
            _ = try await sender.exchange(on: tunnel, head: head, body: Array("{}".utf8), answered: AnsweredSoFar())
        } catch {
            failure = error
        }
        try await sender.shutdown()
        await receiver.stop()

        let thrown = try #require(failure)
        #expect(WebhookSender.classify(thrown).0 == .tls, "\(thrown)")
        #expect(receiver.received.isEmpty)
    }

    @Test("with the proxy set, the policy still refuses internal addresses, and the proxy is never asked")
    func policyStillApplies() async throws {
        let receiver = try await WebhookReceiverServer.start()
        let proxy = try await TestTinyproxy.start()
        // The resolver answers 127.0.0.1 for every name: a name that rebinds to loopback.
        let sender = try Self.sender(proxy: proxy.url, allowPrivateNetworks: false)
        var results: [SendResult] = []
        for url in ["http://127.0.0.1:\(receiver.port)/", "http://rebound.test:\(receiver.port)/"] {
            results.append(
                await sender.post(url: url, headers: [], body: Array("{}".utf8), logger: TestDatabase.logger))
        }
        try await sender.shutdown()
        let targets = proxy.connectTargets
        await proxy.stop()
        await receiver.stop()

        for result in results {
            #expect(result.errorClass == .policyRefused, "\(result)")
            #expect(result.isPermanent)
        }
        #expect(targets.isEmpty, "\(targets)")
        #expect(receiver.connectionCount == 0)
    }

    @Test("a proxy's refusal of CONNECT is policy_refused; a receiver it cannot reach is retried")
    func proxyRefuses() async throws {
        let receiver = try await WebhookReceiverServer.start()
        // Only port 1 may be tunnelled to: tinyproxy answers 403 for the receiver's.
        let strict = try await TestTinyproxy.start(allowedConnectPorts: [1])
        let refusing = try Self.sender(proxy: strict.url)
        let refused = await refusing.post(
            url: "http://receiver.test:\(receiver.port)/", headers: [], body: [], logger: TestDatabase.logger)
        try await refusing.shutdown()
        await strict.stop()

        let open = try await TestTinyproxy.start()
        let sender = try Self.sender(proxy: open.url)
        let closedPort = try freeLoopbackPort()
        let unreachable = await sender.post(
            url: "http://receiver.test:\(closedPort)/", headers: [], body: [], logger: TestDatabase.logger)
        try await sender.shutdown()
        await open.stop()
        await receiver.stop()

        #expect(refused.errorClass == .policyRefused, "\(refused)")
        #expect(refused.isPermanent)
        #expect(refused.error?.contains("403") == true, "\(refused)")
        #expect(receiver.connectionCount == 0)
        #expect(unreachable.errorClass == .connectFailed, "\(unreachable)")
        #expect(!unreachable.isPermanent)
    }

    @Test("a proxy that does not answer is a connection error, retried; its credentials never show")
    func deadProxy() async throws {
        let port = try freeLoopbackPort()
        let sender = try Self.sender(proxy: "http://ops:hunter2@127.0.0.1:\(port)")
        let result = await sender.post(
            url: "http://receiver.test:8080/", headers: [], body: [], logger: TestDatabase.logger)
        try await sender.shutdown()
        #expect(result.errorClass == .connectFailed, "\(result)")
        #expect(!result.isPermanent)
        #expect(result.error?.contains("egress proxy") == true, "\(result)")
        #expect(result.error?.contains("hunter2") == false)
    }

    @Test("the proxy URL: http with a host, credentials as Basic, shown redacted; anything else refused")
    func proxyURL() throws {
        let proxy = try EgressProxy(url: "http://ops:s%3Acret@proxy.internal:3128")
        #expect(proxy.host == "proxy.internal" && proxy.port == 3128)
        #expect(proxy.authorization == "Basic " + Data("ops:s:cret".utf8).base64EncodedString())
        #expect(proxy.redactedURL == "http://***@proxy.internal:3128")
        #expect(try EgressProxy(url: "http://[::1]:8888/").host == "::1")
        #expect(try EgressProxy(url: "http://squid").port == 80)
        for bad in ["https://proxy:3128", "proxy:3128", "http://", "http://proxy:3128/path", "socks5://proxy:1080"] {
            #expect(throws: EgressProxy.InvalidURL.self, "\(bad)") { try EgressProxy(url: bad) }
        }
        do {
            _ = try EgressProxy(url: "https://ops:hunter2@proxy:3128")
        } catch {
            #expect(!error.description.contains("hunter2"))
        }
    }
}
