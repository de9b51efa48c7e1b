import Dispatch
import Synchronization

/// A one-shot signal whose waiters stop waiting when it is signalled or when their bound passes,
/// whichever comes first: for work handed to a thread that may be stuck in libpq (closing a
/// connection whose queue still runs an abandoned call, a listener's thread in `LISTEN`), which
/// the caller must not wait out.
final class BoundedSignal: Sendable {
    private struct State {
        var signalled = false
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextID = 0
    }
    private let state = Mutex(State())

    func signal() {
        let waiters = state.withLock { state in
            state.signalled = true
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once signalled, or after `bound`.
    func wait(atMost bound: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let id = state.withLock { state -> Int? in
                if state.signalled { return nil }
                state.nextID += 1
                state.waiters[state.nextID] = continuation
                return state.nextID
            }
            guard let id else {
                continuation.resume()
                return
            }
            let milliseconds = Int(bound / .milliseconds(1))
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) {
                self.state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
            }
        }
    }
}
