import Foundation
import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing

/// Counts handlers running per concurrency key, and the most ever seen at once.
final class KeyConcurrency: Sendable {
    private let state = Mutex<(now: [String: Int], peak: [String: Int])>(([:], [:]))

    func enter(_ key: String) {
        state.withLock { state in
            state.now[key, default: 0] += 1
            state.peak[key] = max(state.peak[key] ?? 0, state.now[key]!)
        }
    }
    func leave(_ key: String) { state.withLock { $0.now[key, default: 0] -= 1 } }
    var peaks: [String: Int] { state.withLock { $0.peak } }
}

@Suite("Concurrency keys", .timeLimit(.minutes(2)))
struct ConcurrencyKeyTests {
    @Test("two replicas never run more than the limit per key, and every job runs once")
    func limitAcrossReplicas() async throws {
        try await withQueueDatabase { database in
            try await database.query(
                """
                INSERT INTO \(database.schema).jobs (kind, concurrency_key)
                SELECT 'test.job', 'key-' || (n % 4) FROM generate_series(1, 120) n
                """)
            let counter = KeyConcurrency()
            let recorder = Recorder()
            let handler = ClosureHandler(concurrencyLimit: 3) { job in
                let key = job.concurrencyKey ?? "none"
                counter.enter(key)
                recorder.record(job)
                try? await Task.sleep(for: .milliseconds(30))
                counter.leave(key)
                return .complete
            }
            let workers = (0..<2).map { _ in
                RunningWorker(database, handlers: [handler]) {
                    $0.concurrency = 16
                    $0.pollInterval = .milliseconds(50)
                }
            }
            let drained = try await eventually(timeout: .seconds(60)) {
                try await database.count("SELECT count(*) FROM \(database.schema).jobs") == 0
            }
            for worker in workers { try await worker.stop() }
            #expect(drained)
            #expect(recorder.totalCalls == 120 && recorder.duplicates.isEmpty)
            #expect(counter.peaks.count == 4)
            #expect(counter.peaks.values.allSatisfy { $0 <= 3 }, "\(counter.peaks)")
            #expect(counter.peaks.values.contains(3), "the limit should be reached: \(counter.peaks)")
        }
    }

    @Test("a saturated key's backlog does not hold up other keys or unkeyed jobs queued behind it")
    func saturatedKeyDoesNotBlock() async throws {
        try await withQueueDatabase { database in
            try await database.query(
                """
                INSERT INTO \(database.schema).jobs (kind, concurrency_key, run_at) SELECT 'test.job', 'busy', now() - \
                interval '1 hour' FROM generate_series(1, 2000)
                """
            )
            let gate = Gate()
            let others = Recorder()
            let handler = ClosureHandler(concurrencyLimit: 2) { job in
                if job.concurrencyKey == "busy" {
                    await gate.wait()
                } else {
                    others.record(job)
                }
                return .complete
            }
            let worker = RunningWorker(database, handlers: [handler]) { $0.pollInterval = .milliseconds(50) }
            #expect(await eventually { worker.worker.inFlightCount == 2 })
            try await database.query(
                """
                INSERT INTO \(database.schema).jobs (kind, concurrency_key) SELECT 'test.job', 'quiet-' || n FROM \
                generate_series(1, 10) n
                """
            )
            try await database.query(
                "INSERT INTO \(database.schema).jobs (kind) SELECT 'test.job' FROM generate_series(1, 10)")
            #expect(await eventually(timeout: .seconds(5)) { others.totalCalls == 20 })
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(database.schema).jobs WHERE concurrency_key = 'busy' AND state = 'running'"
                )
                    == 2)
            gate.open()
            try await worker.stop()
        }
    }

    @Test("a paused kind is not claimed until resumed; running jobs finish")
    func pauseAndResume() async throws {
        try await withQueueDatabase { database in
            try await database.query("INSERT INTO \(database.schema).paused_kinds (kind) VALUES ('test.job')")
            try await database.query(
                "INSERT INTO \(database.schema).jobs (kind) SELECT 'test.job' FROM generate_series(1, 5)")
            let recorder = Recorder()
            let worker = RunningWorker(
                database,
                handlers: [
                    ClosureHandler {
                        recorder.record($0); return .complete
                    }
                ]
            ) {
                $0.pollInterval = .milliseconds(100)
            }
            try await Task.sleep(for: .seconds(1))
            #expect(recorder.totalCalls == 0)
            try await database.query("DELETE FROM \(database.schema).paused_kinds WHERE kind = 'test.job'")
            #expect(await eventually(timeout: .seconds(5)) { recorder.totalCalls == 5 })
            try await worker.stop()
        }
    }
}
