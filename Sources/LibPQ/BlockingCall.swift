import Dispatch
import Synchronization

/// Bridges one blocking libpq call, run on a connection's serial queue, to the task awaiting it,
/// with cancellation that holds even while libpq blocks.
///
/// This is a hand-written continuation state machine on purpose: it is the one place where a
/// blocking C call meets Swift concurrency, and no stream type can both hand back a value and be
/// abandoned half-way. A cancelled call that has not started never runs. A call that is running
/// is asked to stop (`whenCancelledWhileRunning`: `PQcancel` for statements, a flag the connect
/// loop polls); if it has not returned after ``PQConnection/cancellationGrace``, the caller
/// is released with `CancellationError` and `whenAbandoned` marks the connection unusable. A
/// value the call produces after it was abandoned goes to `orphan` (to close a handle).
final class BlockingCall<T: Sendable>: Sendable {
    private enum Phase {
        case queued, running, finished, abandoned
    }
    private struct State {
        var phase = Phase.queued
        var cancelled = false
        var continuation: CheckedContinuation<T, any Error>?
    }
    private let state = Mutex(State())

    static func run(
        on queue: DispatchQueue,
        whenCancelledWhileRunning: @escaping @Sendable () -> Void,
        whenAbandoned: @escaping @Sendable () -> Void = {},
        orphan: @escaping @Sendable (T) -> Void,
        _ work: @escaping @Sendable (_ isCancelled: () -> Bool) throws -> T
    ) async throws -> T {
        let call = BlockingCall<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                guard call.install(continuation) else { return }
                queue.async {
                    guard call.start() else { return }
                    let result = Result { try work { call.isCancelled } }
                    if !call.finish(result), case .success(let value) = result { orphan(value) }
                }
            }
        } onCancel: {
            guard call.cancel() else { return }
            whenCancelledWhileRunning()
            DispatchQueue.global().asyncAfter(
                deadline: .now() + .milliseconds(Int(PQConnection.cancellationGrace.components.seconds * 1000))
            ) {
                call.abandonIfRunning(whenAbandoned)
            }
        }
    }

    private var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// False when the call was cancelled before it was even queued: resumed already.
    private func install(_ continuation: CheckedContinuation<T, any Error>) -> Bool {
        let cancelledAlready = state.withLock { state -> Bool in
            if state.cancelled {
                state.phase = .abandoned
                return true
            }
            state.continuation = continuation
            return false
        }
        if cancelledAlready { continuation.resume(throwing: CancellationError()) }
        return !cancelledAlready
    }

    private func start() -> Bool {
        state.withLock { state in
            guard state.phase == .queued else { return false }
            state.phase = .running
            return true
        }
    }

    /// Hands the result to the caller; false when the caller was released already.
    private func finish(_ result: Result<T, any Error>) -> Bool {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            guard state.phase == .running else { return nil }
            state.phase = .finished
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(with: result)
        return continuation != nil
    }

    /// Marks the call cancelled. Returns true when it is running (ask it to stop); a queued call
    /// is released at once and will not run.
    private func cancel() -> Bool {
        let (running, queued) = state.withLock { state -> (Bool, CheckedContinuation<T, any Error>?) in
            state.cancelled = true
            switch state.phase {
            case .running:
                return (true, nil)
            case .queued:
                state.phase = .abandoned
                defer { state.continuation = nil }
                return (false, state.continuation)
            case .finished, .abandoned:
                return (false, nil)
            }
        }
        queued?.resume(throwing: CancellationError())
        return running
    }

    /// Releases the caller of a call still running after the grace period; `whenAbandoned` runs
    /// first, so the connection is marked unusable before its caller can hand it back.
    private func abandonIfRunning(_ whenAbandoned: () -> Void) {
        let continuation = state.withLock { state -> CheckedContinuation<T, any Error>? in
            guard state.phase == .running else { return nil }
            state.phase = .abandoned
            defer { state.continuation = nil }
            return state.continuation
        }
        guard let continuation else { return }
        whenAbandoned()
        continuation.resume(throwing: CancellationError())
    }
}
