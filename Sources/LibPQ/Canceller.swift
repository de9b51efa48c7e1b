import CLibPQ
import Foundation
import Synchronization

/// A connection's `PGcancel`: sends a cancel request for whatever statement runs on it.
///
/// `PQcancel` opens a connection of its own to the server and has no timeout: during a partition
/// it blocks until the connect gives up (about two minutes on Linux), and for good when something
/// on the way accepts and never answers. libpq 17's `PQcancelStart`/`PQcancelPoll` could be
/// bounded, but the libpq we build against (15 on Debian bookworm) lacks them. So each request
/// runs on a thread of its own that nobody waits for: ``BlockingCall`` releases the cancelled
/// caller after ``PQConnection/cancellationGrace`` either way, and the thread ends when
/// libpq gives up.
///
/// The lock guards the bookkeeping only, never `PQcancel`, so ``free()`` (from `close()` and
/// `deinit`, often on a cooperative thread) never waits for a request in flight: whichever of the
/// two comes last frees the `PGcancel`. One request at a time: a second would be stuck the same.
final class Canceller: Sendable {
    /// `@unchecked Sendable`: a `PGcancel` may be used from any thread (that is its purpose);
    /// `State` says when it may be freed.
    private struct Pointer: @unchecked Sendable {
        let value: OpaquePointer
    }
    private struct State {
        var pointer: Pointer?
        var sending = false
        var freed = false

        mutating func take() -> Pointer? {
            defer { pointer = nil }
            return pointer
        }
    }
    private let state: Mutex<State>

    init(_ cancel: OpaquePointer?) {
        state = Mutex(State(pointer: cancel.map(Pointer.init)))
    }

    /// Sends the request from a thread of its own, unless one is in flight or the handle is freed.
    func send() {
        let pointer = state.withLock { state -> Pointer? in
            guard !state.freed, !state.sending, let pointer = state.pointer else { return nil }
            state.sending = true
            return pointer
        }
        guard let pointer else { return }
        let thread = Thread { [self] in
            // PQcancel sends on a socket of its own without MSG_NOSIGNAL (libpq 15): a server that
            // resets that connection first would raise SIGPIPE, which ends the process unless it
            // is ignored. Blocked on this thread, which ends right after, the signal is dropped.
            var pipe = sigset_t()
            sigemptyset(&pipe)
            sigaddset(&pipe, SIGPIPE)
            pthread_sigmask(SIG_BLOCK, &pipe, nil)
            var buffer = [CChar](repeating: 0, count: 256)
            _ = PQcancel(pointer.value, &buffer, Int32(buffer.count))
            let release = state.withLock { state -> Pointer? in
                state.sending = false
                return state.freed ? state.take() : nil
            }
            if let release { PQfreeCancel(release.value) }
        }
        thread.name = "libpq-cancel"
        thread.start()
    }

    /// Frees the handle now, or when the request in flight returns. Never blocks.
    func free() {
        let release = state.withLock { state -> Pointer? in
            state.freed = true
            return state.sending ? nil : state.take()
        }
        if let release { PQfreeCancel(release.value) }
    }
}
