import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import WebhookReceiver

/// Receivers that misbehave on purpose, for tests: the ways real receivers fail that the worker
/// must survive. They live here, not in the shipped receiver, which only answers with a status.
extension ReceiverResponse {
    /// 200 with a chunked body that never ends.
    public static var endlessBody: ReceiverResponse { .raw(EndlessBody()) }
    /// Closes the connection with a TCP reset instead of answering.
    public static var reset: ReceiverResponse { .raw(Reset()) }
    /// Never answers.
    public static var hang: ReceiverResponse { .raw(Hang()) }
    /// Sends the status line and part of a longer body, then nothing more.
    public static func stallAfterHead(_ status: Int) -> ReceiverResponse { .raw(StallAfterHead(status: status)) }
}

struct EndlessBody: RawAnswer {
    func answer(on context: ChannelHandlerContext, keepAlive: Bool) {
        var head = HTTPResponseHead(version: .http1_1, status: .ok)
        head.headers.add(name: "transfer-encoding", value: "chunked")
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 16 * 1024)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(5)) { task in
            let context = bound.value
            guard context.channel.isActive else {
                task.cancel()
                return
            }
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.body(.byteBuffer(chunk))), promise: nil)
        }
    }
}

struct Reset: RawAnswer {
    func answer(on context: ChannelHandlerContext, keepAlive: Bool) {
        // SO_LINGER 0 makes close() send RST instead of FIN.
        guard let socket = context.channel as? any SocketOptionProvider else {
            context.close(promise: nil)
            return
        }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in bound.value.close(promise: nil) }
    }
}

struct Hang: RawAnswer {
    func answer(on context: ChannelHandlerContext, keepAlive: Bool) {}
}

struct StallAfterHead: RawAnswer {
    let status: Int

    func answer(on context: ChannelHandlerContext, keepAlive: Bool) {
        var head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: status))
        head.headers.add(name: "content-length", value: "1000")
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        context.writeAndFlush(
            NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "accepted, more to come")))), promise: nil
        )
    }
}

/// Holds every request it answers until ``open()``, then answers each with its status: a test
/// acts while a request is in flight (the receiver has it, the sender waits), then lets it end.
public final class AnswerGate: Sendable {
    private let state = Mutex<(isOpen: Bool, waiting: [@Sendable () -> Void])>((false, []))

    public init() {}

    /// An answer that waits for the gate, then sends `status` with an empty body.
    public func hold(_ status: Int) -> ReceiverResponse { .raw(HeldAnswer(gate: self, status: status)) }

    /// Answers the held requests, and later ones at once.
    public func open() {
        let waiting = state.withLock { state in
            state.isOpen = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for answer in waiting { answer() }
    }

    fileprivate func whenOpen(_ answer: @escaping @Sendable () -> Void) {
        let now = state.withLock { state in
            if !state.isOpen { state.waiting.append(answer) }
            return state.isOpen
        }
        if now { answer() }
    }
}

struct HeldAnswer: RawAnswer {
    let gate: AnswerGate
    let status: Int

    func answer(on context: ChannelHandlerContext, keepAlive: Bool) {
        let loop = context.eventLoop
        let bound = NIOLoopBound(context, eventLoop: loop)
        let status = status
        gate.whenOpen {
            loop.execute {
                let context = bound.value
                guard context.channel.isActive else { return }
                var head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: status))
                head.headers.add(name: "content-length", value: "0")
                context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
                context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: nil)
            }
        }
    }
}
