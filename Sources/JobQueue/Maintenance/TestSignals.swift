import Synchronization

/// What the worker's services report after each run, for tests to wait on instead of polling the
/// database (river's `JobRescuerTestSignals`). Each signal is off until a test enables it (the
/// test fixture's `RunningWorker` does, before the worker starts): off, a signal costs one
/// atomic load and keeps nothing.
package struct WorkerTestSignals: Sendable {
    /// The reaper ran: the jobs it returned to the queue (0 included).
    package let reaped = TestSignal<Int>()
    /// The lease renewer ran: the jobs whose leases were lost and whose handlers it cancelled.
    package let leasesLost = TestSignal<[Int64]>()
    /// The key repairer ran: the concurrency keys it mended.
    package let keysRepaired = TestSignal<Int>()
    /// The history upkeep ran: what it created and dropped.
    package let historyKept = TestSignal<HistoryPartitions.Upkeep>()
    /// The finisher wrote (or gave up) an attempt's outcome: its job and attempt.
    package let recorded = TestSignal<RecordedAttempt>()

    package struct RecordedAttempt: Sendable, Equatable {
        package let jobID: Int64
        package let attempt: Int
    }

    package func enable() {
        reaped.enable()
        leasesLost.enable()
        keysRepaired.enable()
        recorded.enable()
        historyKept.enable()
    }
}

/// One kind of event a service reports, kept once enabled so that a test waiting after the fact
/// still sees it.
package final class TestSignal<Value: Sendable>: Sendable {
    private struct Waiter {
        let matches: @Sendable (Value) -> Bool
        let continuation: CheckedContinuation<Value?, Never>
    }

    private struct State {
        var values: [Value] = []
        var waiters: [Int: Waiter] = [:]
        var nextWaiter = 0
    }

    private let enabled = Atomic<Bool>(false)
    private let state = Mutex(State())

    package init() {}

    package func enable() { enabled.store(true, ordering: .sequentiallyConsistent) }

    /// Called by the service after a run.
    func signal(_ value: Value) {
        guard enabled.load(ordering: .relaxed) else { return }
        let woken = state.withLock { state -> [Waiter] in
            state.values.append(value)
            let ids = state.waiters.filter { $0.value.matches(value) }.map(\.key)
            return ids.compactMap { state.waiters.removeValue(forKey: $0) }
        }
        for waiter in woken { waiter.continuation.resume(returning: value) }
    }

    /// Everything signalled since the signal was enabled.
    package var values: [Value] { state.withLock { $0.values } }

    /// The first value signalled (already, or from now on) that `matches`, or nil when none comes
    /// within `timeout`.
    package func wait(
        timeout: Duration = .seconds(60), for matches: @escaping @Sendable (Value) -> Bool
    ) async -> Value? {
        await withTaskGroup(of: Value?.self) { group in
            group.addTask { await self.next(matching: matches) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    private func next(matching matches: @escaping @Sendable (Value) -> Bool) async -> Value? {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let found = state.withLock { state -> Value?? in
                    if let value = state.values.first(where: matches) { return .some(value) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters[id] = Waiter(matches: matches, continuation: continuation)
                    return nil
                }
                if let found { continuation.resume(returning: found) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume(returning: nil)
        }
    }
}
