import NIOCore
import NIOHTTP1

/// The request and response of a webhook exchange, over a tunnel.
typealias TunnelChannel = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

/// Asks an HTTP proxy for a tunnel (`CONNECT address:port`) as soon as the connection to the
/// proxy is up. It sits after the handlers named ``encoderName`` (an `HTTPRequestEncoder`) and
/// ``decoderName`` (an `HTTPResponseDecoder`, which knows that a `CONNECT` response has no body).
/// When the proxy answers 2xx, it removes them and itself and sets up the tunnel's own pipeline
/// (`makeTunnel`) in the same event-loop turn, so no byte of the tunnel meets the proxy's codec;
/// then it completes `established`. It fails `established` with ``EgressProxy/Refused`` for any
/// other answer and ``EgressProxy/Unreachable`` when the connection ends first.
final class ProxyConnectHandler: ChannelInboundHandler, RemovableChannelHandler {
    static let encoderName = "proxy.encoder"
    static let decoderName = "proxy.decoder"

    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private enum State {
        case waitingForActive
        case connectSent
        /// A 2xx head arrived; its end completes the handshake.
        case accepted
        case done
    }

    /// `1.2.3.4:443` or `[2001:db8::1]:443`: an address the policy checked, never a name.
    private let target: String
    private let proxy: String
    private let authorization: String?
    private let established: EventLoopPromise<TunnelChannel>
    private let makeTunnel: (Channel) throws -> TunnelChannel
    private var state = State.waitingForActive

    init(
        target: String, proxy: EgressProxy, established: EventLoopPromise<TunnelChannel>,
        makeTunnel: @escaping (Channel) throws -> TunnelChannel
    ) {
        self.target = target
        self.proxy = proxy.authority
        self.authorization = proxy.authorization
        self.established = established
        self.makeTunnel = makeTunnel
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { sendConnect(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendConnect(context: context)
        context.fireChannelActive()
    }

    // Before the connection is up, a failure is the connect's, which the caller reports.
    func handlerRemoved(context: ChannelHandlerContext) {
        guard case .waitingForActive = state else {
            fail(EgressProxy.Unreachable(proxy: proxy, underlying: ChannelError.ioOnClosedChannel), context: nil)
            return
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .connectSent = state {
            fail(EgressProxy.Unreachable(proxy: proxy, underlying: ChannelError.eof), context: nil)
        } else if case .accepted = state {
            fail(EgressProxy.Unreachable(proxy: proxy, underlying: ChannelError.eof), context: nil)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(EgressProxy.Unreachable(proxy: proxy, underlying: error), context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (unwrapInboundIn(data), state) {
        case (.head(let head), .connectSent):
            if (200..<300).contains(head.status.code) {
                state = .accepted
            } else {
                let refused = EgressProxy.Refused(
                    status: Int(head.status.code), reason: head.status.reasonPhrase, target: target)
                fail(refused, context: context)
            }
        case (.end, .accepted):
            state = .done
            // The decoder observes writes (to know a response's method) until it has left the
            // pipeline, and it leaves only once its decode loop, which called us, unwinds: the
            // tunnel's first bytes (a TLS ClientHello) must wait for that.
            let pipeline = context.pipeline.syncOperations
            let channel = context.channel
            let established = self.established
            let makeTunnel = self.makeTunnel
            let decoderGone = context.eventLoop.makePromise(of: Void.self)
            pipeline.removeHandler(name: Self.encoderName, promise: nil)
            pipeline.removeHandler(name: Self.decoderName, promise: decoderGone)
            pipeline.removeHandler(context: context, promise: nil)
            decoderGone.futureResult.assumeIsolated().whenComplete { removed in
                do {
                    try removed.get()
                    established.succeed(try makeTunnel(channel))
                } catch {
                    established.fail(error)
                    channel.close(promise: nil)
                }
            }
        default:
            // A refusal's body, or parts after a failure: nothing to do with them.
            break
        }
    }

    private func sendConnect(context: ChannelHandlerContext) {
        guard case .waitingForActive = state else { return }
        state = .connectSent
        var head = HTTPRequestHead(version: .http1_1, method: .CONNECT, uri: target)
        head.headers.add(name: "Host", value: target)
        if let authorization { head.headers.add(name: "Proxy-Authorization", value: authorization) }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    /// Fails the handshake once; with a context, also closes the connection.
    private func fail(_ error: any Error, context: ChannelHandlerContext?) {
        guard case .done = state else {
            state = .done
            established.fail(error)
            context?.close(promise: nil)
            return
        }
    }
}
