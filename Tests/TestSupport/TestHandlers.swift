import Foundation
import JobQueue
import Synchronization

/// A handler whose behaviour each test writes as a closure.
struct ClosureHandler: JobHandler {
    let kind: String
    let retryStrategy: (any RetryStrategy)?
    let concurrencyLimit: Int?
    let body: @Sendable (Job) async throws -> JobOutcome

    init(
        kind: String = "test.job", retryStrategy: (any RetryStrategy)? = nil, concurrencyLimit: Int? = nil,
        _ body: @escaping @Sendable (Job) async throws -> JobOutcome
    ) {
        self.kind = kind
        self.retryStrategy = retryStrategy
        self.concurrencyLimit = concurrencyLimit
        self.body = body
    }

    func handle(_ job: Job, context: JobContext) async throws -> JobOutcome { try await body(job) }
}

/// Counts what handlers saw, safely from many tasks. A call and its start time are recorded under
/// one lock: a test that sees the call must see its start time too.
final class Recorder: Sendable {
    private let state = Mutex<(seen: [Int64: Int], starts: [(Int64, ContinuousClock.Instant)])>(([:], []))

    func record(_ job: Job) {
        state.withLock {
            $0.seen[job.id, default: 0] += 1
            $0.starts.append((job.id, .now))
        }
    }

    var handledIDs: Set<Int64> { state.withLock { Set($0.seen.keys) } }
    var totalCalls: Int { state.withLock { $0.seen.values.reduce(0, +) } }
    var duplicates: [Int64] { state.withLock { $0.seen.filter { $0.value > 1 }.map(\.key) } }
    func calls(_ id: Int64) -> Int { state.withLock { $0.seen[id] ?? 0 } }
    func startTimes(_ id: Int64) -> [ContinuousClock.Instant] {
        state.withLock { $0.starts.filter { $0.0 == id }.map(\.1) }
    }
}

/// A one-shot signal a handler can wait on.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }
}
