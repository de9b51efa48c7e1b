import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing

@Suite("Recovery from lost connections", .timeLimit(.minutes(4)))
struct ReconnectTests {
    @Test("the worker recovers by itself when its backends are terminated")
    func terminatedBackends() async throws {
        try await withQueueDatabase { database in try await Self.recoversFromTerminatedBackends(database) }
    }

    /// The body of ``terminatedBackends()``, as a function of its own: as a closure, it crashes
    /// the Swift 6.3.1 compiler's region analysis (SendNonSendable).
    static func recoversFromTerminatedBackends(_ database: TestDatabase) async throws {
        let schema = database.queue.name
        let recorder = Recorder()
        let handler = ClosureHandler { job in
            recorder.record(job)
            try await Task.sleep(for: .milliseconds(2))
            return .complete
        }
        let worker = RunningWorker(database, handlers: [handler]) { $0.pollInterval = .milliseconds(500) }
        try await database.query(
            "INSERT INTO \(schema).jobs (kind) SELECT 'test.job' FROM generate_series(1, 500)")
        #expect(await eventually { recorder.handledIDs.count >= 100 })
        for _ in 0..<3 {
            try await database.script(
                """
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid \
                <> pg_backend_pid()
                """
            )
            try await Task.sleep(for: .milliseconds(200))
        }
        try await database.query(
            "INSERT INTO \(schema).jobs (kind) SELECT 'test.job' FROM generate_series(1, 500)")
        let drained = await eventually(timeout: .seconds(60)) {
            (try? await database.count("SELECT count(*) FROM \(schema).jobs")) == 0
        }
        try await worker.stop()
        #expect(drained)
        #expect(recorder.handledIDs.count == 1000)
        // Every job finished with exactly one recorded success.
        #expect(
            try await database.count(
                "SELECT count(DISTINCT job_id) FROM \(schema).job_attempts WHERE outcome = 'succeeded'")
                == 1000)
    }

    @Test("the worker recovers by itself when PostgreSQL restarts mid-run")
    func serverRestart() async throws {
        let directory = TestDatabase.repoRoot + "/.pg/restart-\(UUID().uuidString.prefix(8))"
        let server = try runScript("start", directory).trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? runScript("destroy", directory) }
        let database = try await TestDatabase.create(server: server, queue: try testQueue())
        let recorder = Recorder()
        let handler = ClosureHandler { job in
            recorder.record(job)
            try await Task.sleep(for: .milliseconds(5))
            return .complete
        }
        let worker = RunningWorker(database, handlers: [handler]) { $0.pollInterval = .milliseconds(500) }
        try await database.query(
            "INSERT INTO \(database.schema).jobs (kind) SELECT 'test.job' FROM generate_series(1, 400)")
        #expect(await eventually { recorder.handledIDs.count >= 50 })
        _ = try runScript("restart", directory)
        #expect(await eventually { (try? await database.count("SELECT 1")) == 1 })
        try await database.query(
            "INSERT INTO \(database.schema).jobs (kind) SELECT 'test.job' FROM generate_series(1, 400)")
        let drained = await eventually(timeout: .seconds(90)) {
            (try? await database.count("SELECT count(*) FROM \(database.schema).jobs")) == 0
        }
        try await worker.stop()
        #expect(drained)
        #expect(recorder.handledIDs.count == 800)
        #expect(
            try await database.count(
                "SELECT count(DISTINCT job_id) FROM \(database.schema).job_attempts WHERE outcome = 'succeeded'")
                == 800)
    }
}
