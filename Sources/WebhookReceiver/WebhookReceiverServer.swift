import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// One request as a receiver saw it: the raw bytes of the body, headers in order.
public struct ReceivedWebhook: Sendable {
    public let method: String
    public let uri: String
    public let headers: [(name: String, value: String)]
    public let body: [UInt8]
    public let receivedAt: Date
    /// Which accepted connection carried it (1, 2, ...): shows keep-alive at work.
    public let connection: Int
    /// The address the connection came from (`127.0.0.2`): shows a proxy at work.
    public var peerAddress: String? = nil

    /// The first value of a header, case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// How the receiver answers: a status (the `receive` command's choice), after a wait or not.
/// Tests that need a receiver that misbehaves on purpose (endless bodies, resets, hangs) bring
/// their own ``RawAnswer``s; the shipped receiver has none.
public indirect enum ReceiverResponse: Sendable {
    case status(Int, headers: [(String, String)] = [], body: String = "")
    /// Waits, then answers.
    case delay(Duration, then: ReceiverResponse)
    /// Writes to the connection itself.
    case raw(any RawAnswer)

    public static let ok = ReceiverResponse.status(200, body: "ok")
}

/// An answer that writes HTTP response parts (or nothing, or a reset) to the connection itself,
/// on its event loop.
public protocol RawAnswer: Sendable {
    func answer(on context: ChannelHandlerContext, keepAlive: Bool)
}

/// A small HTTP/1.1 server on loopback that records webhooks and answers as told; for
/// `webhook-worker receive`, the demo, and tests.
public final class WebhookReceiverServer: Sendable {
    private let channel: any Channel
    private let shared: SharedState
    public let port: Int

    private init(channel: any Channel, shared: SharedState) {
        self.channel = channel
        self.port = channel.localAddress?.port ?? 0
        self.shared = shared
    }

    /// Starts listening. `respond` decides each answer; `onReceive` sees each request as it arrives.
    /// With `tls`, it serves HTTPS with that configuration.
    public static func start(
        host: String = "127.0.0.1", port: Int = 0, tls: TLSConfiguration? = nil,
        respond: @escaping @Sendable (ReceivedWebhook) -> ReceiverResponse = { _ in .ok },
        onReceive: @escaping @Sendable (ReceivedWebhook) -> Void = { _ in }
    ) async throws -> WebhookReceiverServer {
        let box = SharedState()
        let sslContext = try tls.map { try NIOSSLContext(configuration: $0) }
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let number = box.connections.add(1, ordering: .relaxed).newValue
                return channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        RequestHandler(
                            connection: number, respond: respond,
                            record: { request in
                                box.received.withLock { $0.append(request) }
                                onReceive(request)
                            }))
                }
            }
            .bind(host: host, port: port).get()
        return WebhookReceiverServer(channel: channel, shared: box)
    }

    /// Requests received so far, in arrival order.
    public var received: [ReceivedWebhook] { shared.received.withLock { $0 } }
    /// Connections accepted so far.
    public var connectionCount: Int { shared.connections.load(ordering: .relaxed) }

    public func stop() async {
        try? await channel.close()
    }
}

/// The recording state, shared by the server and its connections' handlers.
private final class SharedState: Sendable {
    let received = Mutex<[ReceivedWebhook]>([])
    let connections = Atomic<Int>(0)
}

private final class RequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let connection: Int
    private let respond: @Sendable (ReceivedWebhook) -> ReceiverResponse
    private let record: @Sendable (ReceivedWebhook) -> Void
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []

    init(
        connection: Int, respond: @escaping @Sendable (ReceivedWebhook) -> ReceiverResponse,
        record: @escaping @Sendable (ReceivedWebhook) -> Void
    ) {
        self.connection = connection
        self.respond = respond
        self.record = record
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
        case .body(var buffer):
            body.append(contentsOf: buffer.readBytes(length: buffer.readableBytes) ?? [])
        case .end:
            guard let head else { return }
            let request = ReceivedWebhook(
                method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) },
                body: body,
                receivedAt: Date(), connection: connection, peerAddress: context.channel.remoteAddress?.ipAddress)
            record(request)
            answer(respond(request), keepAlive: head.isKeepAlive, context: context)
            self.head = nil
        }
    }

    private func answer(_ response: ReceiverResponse, keepAlive: Bool, context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        switch response {
        case .status(let code, let headers, let text):
            var head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: code))
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            head.headers.replaceOrAdd(name: "content-length", value: String(text.utf8.count))
            if !keepAlive { head.headers.replaceOrAdd(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                if !keepAlive { bound.value.1.close(promise: nil) }
            }
        case .delay(let duration, let next):
            let (seconds, attoseconds) = duration.components
            let nanos = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
            loop.scheduleTask(in: .nanoseconds(nanos)) {
                let (handler, context) = bound.value
                guard context.channel.isActive else { return }
                handler.answer(next, keepAlive: keepAlive, context: context)
            }
        case .raw(let raw):
            raw.answer(on: context, keepAlive: keepAlive)
        }
    }
}
