import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import WebhookReceiver

/// Counts the requests a receiver is answering at once, as the endpoint sees them: a request
/// enters when it has arrived and leaves when its answer is written.
final class InFlightGauge: Sendable {
    private let current = Atomic<Int>(0)
    private let highest = Atomic<Int>(0)

    /// The most requests in flight at once so far.
    var peak: Int { highest.load(ordering: .relaxed) }

    /// 200 after `delay`, counted in flight meanwhile.
    func answer(after delay: Duration) -> ReceiverResponse { .raw(CountedAnswer(gauge: self, delay: delay)) }

    fileprivate func enter() {
        let now = current.add(1, ordering: .relaxed).newValue
        highest.max(now, ordering: .relaxed)
    }

    fileprivate func leave() { current.subtract(1, ordering: .relaxed) }
}

private struct CountedAnswer: RawAnswer {
    let gauge: InFlightGauge
    let delay: Duration

    func answer(on context: ChannelHandlerContext, keepAlive: Bool) {
        gauge.enter()
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let gauge = self.gauge
        let (seconds, attoseconds) = delay.components
        context.eventLoop.scheduleTask(in: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)) {
            gauge.leave()
            let context = bound.value
            guard context.channel.isActive else { return }
            var head = HTTPResponseHead(version: .http1_1, status: .ok)
            head.headers.add(name: "content-length", value: "2")
            if !keepAlive { head.headers.add(name: "connection", value: "close") }
            context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "ok")))), promise: nil)
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in
                if !keepAlive { bound.value.close(promise: nil) }
            }
        }
    }
}
