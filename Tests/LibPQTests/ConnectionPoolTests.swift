import Dispatch
import LibPQ
@testable import TestSupport
import Testing

@Suite("The connection pool", .timeLimit(.minutes(4)))
struct ConnectionPoolTests {
    /// A waiter woken for a freed connection and cancelled before it runs again must hand the
    /// wake-up on: otherwise the connection sits idle while the next waiter waits for good.
    @Test("a cancelled waiter stops waiting at once, and the next waiter gets the freed connection")
    func cancelledWaiter() async throws {
        try await withTestDatabase { database in
            let pool = database.pool(size: 1)
            let (release, releaseContinuation) = AsyncStream.makeStream(of: Void.self)
            let holder = Task {
                try await pool.withConnection { _ in
                    for await _ in release {}
                }
            }
            let held = await eventually { pool.leasedCount == 1 }
            try #require(held)

            // A waiter that is cancelled while it waits ends at once.
            let early = Task { try await pool.withConnection { _ in } }
            try #require(await eventually { pool.waitingCount == 1 })
            early.cancel()
            await #expect(throws: CancellationError.self) { try await early.value }
            #expect(pool.waitingCount == 0)

            // The first waiter runs on an executor the test can pause, so that it is woken (the
            // holder gives its connection back) and cancelled before it runs again.
            let executor = PausableExecutor()
            let first = Task {
                try await withTaskExecutorPreference(executor) { try await pool.withConnection { _ in } }
            }
            try #require(await eventually { pool.waitingCount == 1 })
            let second = Task { try await pool.withConnection { _ in } }
            try #require(await eventually { pool.waitingCount == 2 })
            executor.pause()
            releaseContinuation.finish()
            try await holder.value
            first.cancel()
            executor.resume()
            await #expect(throws: CancellationError.self) { try await first.value }
            #expect(await finishes(within: .seconds(5)) { try await second.value })
            await pool.close()
        }
    }
}

/// A task executor whose jobs wait while it is paused: a test holds a woken task still, to act
/// on it before it runs again.
final class PausableExecutor: TaskExecutor {
    private let queue = DispatchQueue(label: "pausable-executor")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    func pause() { queue.suspend() }
    func resume() { queue.resume() }
}
