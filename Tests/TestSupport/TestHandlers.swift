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

/// Counts what handlers saw, safely from many tasks.
final class Recorder: Sendable {
    private let seen = Mutex<[Int64: Int]>([:])
    private let starts = Mutex<[(Int64, ContinuousClock.Instant)]>([])

    func record(_ job: Job) {
        seen.withLock { $0[job.id, default: 0] += 1 }
        starts.withLock { $0.append((job.id, .now)) }
    }

    var handledIDs: Set<Int64> { seen.withLock { Set($0.keys) } }
    var totalCalls: Int { seen.withLock { $0.values.reduce(0, +) } }
    var duplicates: [Int64] { seen.withLock { $0.filter { $0.value > 1 }.map(\.key) } }
    func calls(_ id: Int64) -> Int { seen.withLock { $0[id] ?? 0 } }
    func startTimes(_ id: Int64) -> [ContinuousClock.Instant] { starts.withLock { $0.filter { $0.0 == id }.map(\.1) } }
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
