import AsyncHTTPClient
import Foundation
import JobQueue
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import Tracing

/// What one HTTP attempt came to.
public struct SendResult: Sendable {
    /// The response status, nil when no response arrived.
    public var status: Int?
    /// When no response arrived: why.
    public var errorClass: DeliveryErrorClass?
    /// A readable account of the failure; nil on success.
    public var error: String?
    /// The receiver's `Retry-After`, when it sent a usable one with a 429 or 503.
    public var retryAfter: Duration?
    /// The start of the response body (at most `excerptBytes`), as UTF-8 with invalid bytes replaced.
    public var excerpt: String?
    public var duration: Duration

    public var succeeded: Bool { status.map(Self.isSuccess) ?? false }
    /// A 2xx status: the receiver has the webhook.
    static func isSuccess(_ status: Int) -> Bool { (200...299).contains(status) }
    /// A failure that retrying cannot fix: `410 Gone`, or a destination the policy refuses.
    public var isPermanent: Bool { status == 410 || errorClass?.isPermanent == true }
}

/// Sends webhooks with one shared HTTP client: connect timeout, whole-request timeout, no
/// redirects, at most `maxResponseBytes` of any response read, and the network policy applied
/// before connecting and again to every new connection's peer. Call ``shutdown()`` on exit.
public final class WebhookSender: Sendable {
    public let configuration: WebhookDeliveryConfiguration
    let policy: NetworkPolicy
    private let client: HTTPClient
    let eventLoopGroup: any EventLoopGroup
    /// TLS inside the egress proxy's tunnels; nil without a proxy (or when it could not be made).
    let tunnelTLS: NIOSSLContext?
    /// Cuts each exchange off at the request timeout.
    private let deadlines: ExchangeDeadlines

    public convenience init(
        configuration: WebhookDeliveryConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.init(
            configuration: configuration,
            policy: NetworkPolicy(
                allowHTTP: configuration.allowHTTP, allowPrivateNetworks: configuration.allowPrivateNetworks),
            eventLoopGroup: eventLoopGroup)
    }

    /// `tls` is the client side's TLS (trust roots); tests pass one that trusts their certificate.
    init(
        configuration: WebhookDeliveryConfiguration, policy: NetworkPolicy, eventLoopGroup: any EventLoopGroup,
        tls: TLSConfiguration = .makeClientConfiguration()
    ) {
        self.configuration = configuration
        self.policy = policy
        self.eventLoopGroup = eventLoopGroup
        self.tunnelTLS = configuration.proxy == nil ? nil : try? NIOSSLContext(configuration: tls)
        self.deadlines = ExchangeDeadlines(
            loop: eventLoopGroup.next(), resolution: min(.milliseconds(50), configuration.requestTimeout / 4))
        var clientConfiguration = HTTPClient.Configuration(
            tlsConfiguration: tls,
            redirectConfiguration: .disallow,
            timeout: .init(connect: .milliseconds(configuration.connectTimeout.totalMilliseconds)),
            decompression: .disabled)
        clientConfiguration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.connectionsPerHost)
        // A connection the policy refuses (below) must end the attempt as the refusal it is; with
        // retries on, the client would try again until the connect timeout and report a timeout.
        clientConfiguration.connectionPool.retryConnectionEstablishment = false
        // The client's own span per request is off: ``post(url:headers:body:logger:tracing:redactedURL:)``
        // makes the request's span while tracing is on. Left on, the client would make a span of
        // the global tracer (a no-op one) for every request and parse the URL again to describe it.
        clientConfiguration.tracing.tracer = nil
        // Checked on every connection the client opens, before any request is written on it.
        let check: @Sendable (Channel) -> EventLoopFuture<Void> = { channel in
            if let refusal = policy.refusal(forPeer: channel.remoteAddress) {
                channel.close(promise: nil)
                return channel.eventLoop.makeFailedFuture(refusal)
            }
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        clientConfiguration.http1_1ConnectionDebugInitializer = check
        clientConfiguration.http2ConnectionDebugInitializer = check
        self.client = HTTPClient(eventLoopGroup: eventLoopGroup, configuration: clientConfiguration)
    }

    public func shutdown() async throws {
        try await client.shutdown()
    }

    /// POSTs `body` to `url` with `headers`. Never throws: every failure is a ``SendResult``.
    ///
    /// While `tracing` is on, the request is a client span (a child of the task's current span)
    /// whose `traceparent` goes to the receiver; `redactedURL` is its `url.full` (the URL as logs
    /// show it: see ``URLRedaction``).
    public func post(
        url: String, headers: [(String, String)], body: [UInt8], logger: Logger, tracing: JobTracing = .off,
        redactedURL: String? = nil
    ) async -> SendResult {
        guard tracing.isOn else { return await send(url: url, headers: headers, body: body, logger: logger) }
        return await tracing.withSpan("POST", ofKind: .client) { span in
            let result = await send(
                url: url, headers: headers + tracing.propagationHeaders(), body: body, logger: logger
            ) { target in
                span?.updateAttributes { attributes in
                    attributes.set("server.address", value: .string(target.host))
                    attributes.set("server.port", value: .int64(Int64(target.port)))
                }
            }
            span?.updateAttributes { attributes in
                attributes.set("http.request.method", value: .string("POST"))
                attributes.set("url.full", value: .string(redactedURL ?? URLRedaction.redacted(url)))
                if let status = result.status {
                    attributes.set("http.response.status_code", value: .int64(Int64(status)))
                }
                if !result.succeeded {
                    attributes.set(
                        "error.type",
                        value: .string(result.errorClass?.rawValue ?? result.status.map(String.init) ?? "error"))
                }
            }
            if !result.succeeded { span?.setStatus(SpanStatus(code: .error, message: result.error)) }
            return result
        }
    }

    private func send(
        url: String, headers: [(String, String)], body: [UInt8], logger: Logger,
        resolved: (_ target: (scheme: String, host: String, port: Int)) -> Void = { _ in }
    ) async -> SendResult {
        let clock = ContinuousClock()
        let started = clock.now
        func failure(_ errorClass: DeliveryErrorClass, _ message: String) -> SendResult {
            SendResult(status: nil, errorClass: errorClass, error: message, duration: clock.now - started)
        }

        let target: (scheme: String, host: String, port: Int)
        do {
            target = try policy.checkURL(url)
        } catch {
            return failure(error.errorClass, error.description)
        }
        resolved(target)
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))

        let prepared = request
        let timeout = configuration.requestTimeout
        let limit = configuration.maxResponseBytes
        // The status line decides the attempt; the body is only an excerpt. Once a 2xx status has
        // arrived, the receiver has the webhook, whatever happens to the rest of the exchange.
        let answered = AnsweredSoFar()
        do {
            // The deadline bounds the whole exchange, name resolution and body included: a receiver
            // that trickles an endless body is cut off like one that never answers.
            let (status, responseHeaders, bytes) = try await deadlines.run(within: timeout) {
                if let proxy = self.configuration.proxy {
                    return try await self.exchangeThroughProxy(
                        proxy, url: url, target: target, headers: headers, body: body, answered: answered)
                }
                _ = try await self.policy.checkDestination(host: target.host, port: target.port)
                let response = try await self.client.execute(
                    prepared, timeout: .milliseconds(timeout.totalMilliseconds), logger: logger)
                let status = Int(response.status.code)
                answered.value.withLock { $0 = (status, []) }
                var collected: [UInt8] = []
                for try await chunk in response.body {
                    collected.append(contentsOf: chunk.readableBytesView.prefix(limit - collected.count))
                    answered.value.withLock { $0 = (status, collected) }
                    if collected.count >= limit { break }
                }
                return (Int(response.status.code), response.headers, collected)
            }
            var result = SendResult(
                status: status, errorClass: nil, error: nil,
                excerpt: Self.excerpt(bytes, max: configuration.excerptBytes), duration: clock.now - started)
            if !result.succeeded {
                result.error = "HTTP \(status)"
                if status == 429 || status == 503 {
                    result.retryAfter = responseHeaders.first(name: "retry-after").flatMap { Self.parseRetryAfter($0) }
                }
            }
            return result
        } catch let refusal as NetworkPolicy.Refusal {
            return failure(refusal.errorClass, refusal.description)
        } catch  where answered.value.withLock({ $0.map { SendResult.isSuccess($0.status) } ?? false }) {
            // A 2xx whose body was cut off (the deadline, a reset, shutdown): delivered.
            let (status, bytes) = answered.value.withLock { $0! }
            return SendResult(
                status: status, errorClass: nil, error: nil,
                excerpt: Self.excerpt(bytes, max: configuration.excerptBytes),
                duration: clock.now - started)
        } catch let failed as NetworkPolicy.ResolutionFailure {
            return failure(.dns, failed.description)
        } catch let refused as EgressProxy.Refused {
            return failure(refused.errorClass, refused.description)
        } catch let unreachable as EgressProxy.Unreachable {
            return failure(unreachable.errorClass, unreachable.description)
        } catch let failed as TunnelFailure {
            return failure(failed.errorClass, failed.description)
        } catch {
            let (errorClass, message) = Self.classify(error)
            return failure(errorClass, message)
        }
    }

    static func excerpt(_ bytes: [UInt8], max: Int) -> String? {
        guard !bytes.isEmpty else { return nil }
        let text = String(decoding: bytes.prefix(max), as: UTF8.self)
        return text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}")
    }

    /// `Retry-After` as delta-seconds or an HTTP date; nil when unusable.
    public static func parseRetryAfter(_ value: String, now: Date = Date()) -> Duration? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if let seconds = Int64(trimmed), seconds >= 0 { return .seconds(min(seconds, 86_400 * 30)) }
        guard let date = HTTPDate.parse(trimmed, now: now) else { return nil }
        let seconds = max(0, date.timeIntervalSince(now))
        return .milliseconds(Int64(min(seconds, 86_400 * 30) * 1000))
    }

    /// Names what went wrong by the error's type (AsyncHTTPClient's, NIO's, NIOSSL's, the
    /// policy's), never by words in its message.
    static func classify(_ error: any Error) -> (DeliveryErrorClass, String) {
        let text = "\(error)"
        switch error {
        case is ExchangeDeadlines.Exceeded:
            return (.timeout, "timed out")
        case let error as HTTPClientError:
            switch error {
            case .deadlineExceeded, .readTimeout, .writeTimeout, .cancelled: return (.timeout, "timed out")
            case .connectTimeout: return (.timeout, "connect timed out")
            case .tlsHandshakeTimeout: return (.timeout, "TLS handshake timed out")
            case .remoteConnectionClosed: return (.connectionReset, "the receiver closed the connection")
            default: return (.error, text)
            }
        case let refusal as NetworkPolicy.Refusal:
            return (refusal.errorClass, refusal.description)
        case is CancellationError:
            return (.timeout, "timed out")
        case is NIOSSLError, is NIOSSLExtraError, is BoringSSLError:
            return (.tls, "TLS failed: \(text)")
        case is NIOConnectionError:
            return (.connectFailed, "connection refused or unreachable: \(text)")
        case let error as IOError:
            switch error.errnoCode {
            case ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL:
                return (.connectFailed, "connection refused or unreachable: \(text)")
            case ECONNRESET, EPIPE, ECONNABORTED:
                return (.connectionReset, "the connection was reset: \(text)")
            case ETIMEDOUT:
                return (.timeout, text)
            default:
                return (.error, text)
            }
        case let error as ChannelError:
            switch error {
            case .ioOnClosedChannel, .alreadyClosed, .outputClosed, .inputClosed, .eof:
                return (.connectionReset, "the connection was reset: \(text)")
            case .connectTimeout:
                return (.timeout, text)
            default:
                return (.error, text)
            }
        case HTTPParserError.invalidEOFState:
            // The connection ended in the middle of a response.
            return (.connectionReset, "the connection was reset: \(text)")
        default:
            return (.error, text)
        }
    }
}

/// The status and the body read so far, kept outside the request's task so that a 2xx survives
/// the request being cut off.
final class AnsweredSoFar: Sendable {
    let value = Mutex<(status: Int, bytes: [UInt8])?>(nil)
}
