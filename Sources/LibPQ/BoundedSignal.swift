import Dispatch
import Synchronization

/// A one-shot signal whose waiter stops waiting when it is signalled or when a bound passes,
/// whichever comes first: for work handed to a thread that may be stuck in libpq (closing a
/// connection whose queue still runs an abandoned call), which the caller must not wait out.
final class BoundedSignal: Sendable {
    private struct State {
        var signalled = false
        var continuation: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func signal() {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.signalled = true
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume()
    }

    /// Returns once signalled, or after `bound`. One waiter only.
    func wait(atMost bound: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let signalled = state.withLock { state -> Bool in
                if state.signalled { return true }
                state.continuation = continuation
                return false
            }
            if signalled {
                continuation.resume()
                return
            }
            let milliseconds = Int(bound / .milliseconds(1))
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) { self.signal() }
        }
    }
}
