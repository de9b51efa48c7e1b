/// Wake-ups for one waiting loop, carried by an `AsyncStream` that keeps only the newest: a ring
/// while nobody waits is remembered, and several rings fold into one. One task iterates it.
struct WakeUps<Value: Sendable>: Sendable {
    let stream: AsyncStream<Value>
    private let continuation: AsyncStream<Value>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream(of: Value.self, bufferingPolicy: .bufferingNewest(1))
    }

    func ring(_ value: Value) { continuation.yield(value) }

    /// Ends the stream: the waiting loop sees `nil` once it has taken the last ring.
    func finish() { continuation.finish() }
}

extension WakeUps where Value == Void {
    func ring() { continuation.yield(()) }
}
