import JobQueue
import NIOCore
import Synchronization

/// Cuts HTTP exchanges off at their deadline: name resolution, the request, the response's
/// head and its body, and the egress proxy's tunnel, all under one bound.
///
/// AsyncHTTPClient's own deadline ends when the response's head arrives, so the body and
/// everything before the request are outside it. Each exchange here runs as a child task, and a
/// sweep on an event loop cancels the child of every exchange whose deadline has passed. One
/// sweep every `resolution` serves all the exchanges in flight and stops while there are none.
/// A timer per exchange (a second child task that slept) cost a task group, another task and a
/// dispatch timer per request, and the timer stayed armed until its deadline long after the
/// exchange had ended: with a 15 s timeout at 2,000 requests a second, 30,000 of them.
final class ExchangeDeadlines: Sendable {
    /// How late past its deadline an exchange may be cut off, at most (plus the loop's delay).
    let resolution: Duration
    private let loop: any EventLoop
    private let state = Mutex(State())

    /// Thrown by ``run(within:_:)`` when the deadline cut the exchange off.
    struct Exceeded: Error {}

    init(loop: any EventLoop, resolution: Duration = .milliseconds(50)) {
        self.loop = loop
        self.resolution = resolution
    }

    /// Runs `exchange` in a child task that is cancelled once `timeout` has passed. The
    /// exchange's own value or error, except when the deadline cancelled it and it then failed:
    /// ``Exceeded``.
    func run<T: Sendable>(
        within timeout: Duration, _ exchange: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let id = start(deadline: .now + timeout)
        async let outcome = watched(id, exchange)
        do {
            let value = try await outcome
            _ = finish(id)
            return value
        } catch {
            if finish(id) { throw Exceeded() }
            throw error
        }
    }

    /// How many exchanges are being watched (for tests).
    var watching: Int { state.withLock { $0.running.count } }
    /// How many exchanges the deadline has cancelled (for tests).
    var cutOff: Int { state.withLock { $0.cutOff } }
    /// Whether a sweep is scheduled (for tests: none is while nothing is watched).
    var sweeping: Bool { state.withLock { $0.sweepScheduled } }

    private func watched<T: Sendable>(
        _ id: UInt64, _ exchange: @Sendable () async throws -> T
    ) async throws -> T {
        withUnsafeCurrentTask { task in
            if let task { attach(id, TaskHandle(task: task)) }
        }
        defer { detach(id) }
        return try await exchange()
    }

    private func start(deadline: ContinuousClock.Instant) -> UInt64 {
        let (id, scheduleSweep) = state.withLock { state in
            state.nextID &+= 1
            state.running[state.nextID] = Running(deadline: deadline)
            let scheduleSweep = !state.sweepScheduled
            state.sweepScheduled = true
            return (state.nextID, scheduleSweep)
        }
        if scheduleSweep { scheduleNextSweep() }
        return id
    }

    /// The task is attached under the lock and detached under it before it ends, so the sweep
    /// cancels only a task that is still running. An exchange whose deadline passed before its
    /// task started is cancelled at once.
    private func attach(_ id: UInt64, _ handle: TaskHandle) {
        state.withLock { state in
            guard state.running[id] != nil else { return }
            state.running[id]!.task = handle
            if state.running[id]!.expired { handle.task.cancel() }
        }
    }

    private func detach(_ id: UInt64) {
        state.withLock { $0.running[id]?.task = nil }
    }

    /// Stops watching; true when the deadline had passed and the exchange was cancelled.
    private func finish(_ id: UInt64) -> Bool {
        state.withLock { $0.running.removeValue(forKey: id)?.expired ?? false }
    }

    private func scheduleNextSweep() {
        loop.scheduleTask(in: .milliseconds(max(1, resolution.totalMilliseconds))) { self.sweep() }
    }

    private func sweep() {
        let now = ContinuousClock.now
        let again = state.withLock { state in
            for (id, running) in state.running where !running.expired && running.deadline <= now {
                state.running[id]!.expired = true
                state.cutOff += 1
                running.task?.task.cancel()
            }
            state.sweepScheduled = !state.running.isEmpty
            return state.sweepScheduled
        }
        if again { scheduleNextSweep() }
    }

    private struct State {
        var nextID: UInt64 = 0
        var running: [UInt64: Running] = [:]
        var sweepScheduled = false
        var cutOff = 0
    }

    private struct Running {
        let deadline: ContinuousClock.Instant
        var task: TaskHandle?
        var expired = false
    }

    /// A running child task's handle. Only used under the lock, between the task's attach and
    /// its detach, while the task is certain to be alive.
    private struct TaskHandle: @unchecked Sendable {
        let task: UnsafeCurrentTask
    }
}
