import Foundation
import JobQueue
import LibPQ
import Logging
import Synchronization
@testable import TestSupport
import Testing

/// The half-broken world: connections that die at the wrong moment, statements that block,
/// leases taken away, shutdowns during outages. Each test here failed on the worker before the
/// hardening that fixed it.
@Suite("Partial failure", .timeLimit(.minutes(4)))
struct PartialFailureTests {
    @Test("a claimed row that cannot be read goes to the dead letters, and the rest of its batch runs")
    func unreadableRow() async throws {
        try await withQueueDatabase { database in
            try await database.script(
                """
                INSERT INTO \(database.schema).jobs (kind, payload) VALUES ('test.job', '{"n": 1}'), \
                ('test.job', '{"n": 2}');
                INSERT INTO \(database.schema).jobs (kind, payload, created_at) \
                VALUES ('test.job', '{"n": 3}', 'infinity');
                """)
            let recorder = Recorder()
            let worker = RunningWorker(
                database,
                handlers: [
                    ClosureHandler {
                        recorder.record($0); return .complete
                    }
                ]
            ) {
                $0.lease = .seconds(60)
            }
            let settled = try await eventually(timeout: .seconds(60)) {
                try await database.count("SELECT count(*) FROM \(database.schema).jobs") == 0
            }
            try await worker.stop()
            #expect(settled, "the readable jobs must not wait for the unreadable one's lease")
            #expect(recorder.totalCalls == 2)
            let dead = try #require(
                try await database.query("SELECT * FROM \(database.schema).dead_letter_jobs").first)
            #expect(try dead.decode("reason", as: String.self) == "permanent_failure")
            #expect(try dead.decode("last_error", as: String.self).contains("could not be read"))
            #expect(try dead.decode("payload", as: String.self).contains("3"))
        }
    }

    @Test("a statement timeout releases the job with a growing wait; past the cap it spends attempts and ends dead")
    func timeoutsReleaseThenCount() async throws {
        try await withQueueDatabase { database in
            let id = try #require(
                try await database.scalar(
                    "INSERT INTO \(database.schema).jobs (kind, max_attempts) VALUES ('test.job', 2) RETURNING id",
                    as: Int64.self))
            let handler = ClosureHandler { _ in
                throw PQError(
                    code: .server, message: "canceling statement due to statement timeout", sqlState: "57014")
            }
            let worker = RunningWorker(database, handlers: [handler]) {
                $0.pollInterval = .milliseconds(50)
                $0.maxUncountedReleases = 2
                $0.releaseBackoff = .schedule([.milliseconds(300), .milliseconds(600)], jitter: 0)
                $0.retryStrategy = .schedule([.milliseconds(50)])
            }
            let dead = try await eventually(timeout: .seconds(60)) {
                try await database.count("SELECT count(*) FROM \(database.schema).dead_letter_jobs") == 1
            }
            try await worker.stop()
            #expect(dead)
            let attempts = try await database.query(
                "SELECT outcome, started_at, finished_at FROM \(database.schema).job_attempts WHERE job_id = $1 "
                    + "ORDER BY id",
                [id]
            ).rows
            #expect(
                try attempts.map { try $0.decode("outcome", as: String.self) } == [
                    "released", "released", "failed", "failed",
                ])
            // The releases waited 300 ms, then 600 ms, on the database's clock. Measured from start to
            // start: a release's run_at is its statement's now() plus the wait, and that now() comes
            // after the attempt's start (finished_at is an estimate that a busy server pushes later).
            let starts = try attempts.map { try $0.decode("started_at", as: Date.self) }
            #expect(starts[1].timeIntervalSince(starts[0]) >= 0.3, "\(starts)")
            #expect(starts[2].timeIntervalSince(starts[1]) >= 0.6, "\(starts)")
            #expect(
                try await database.scalar("SELECT reason FROM \(database.schema).dead_letter_jobs", as: String.self)
                    == "attempts_exhausted")
        }
    }

    @Test(
        """
        SIGTERM while the database is down ends within the shutdown timeout; the unwritten outcomes wait for their \
        leases
        """
    )
    func shutdownDuringOutage() async throws {
        try await withQueueDatabase { database in
            let proxy = try TCPProxy(upstreamPort: TCPProxy.serverPort)
            defer { proxy.stop() }
            let conninfo = TCPProxy.conninfo(of: TestDatabase.serverURL, database: database.name, port: proxy.port)
            try await database.query(
                "INSERT INTO \(database.schema).jobs (kind) SELECT 'test.job' FROM generate_series(1, 3)")
            let gate = Gate()
            let started = Recorder()
            let worker = RunningWorker(
                database,
                handlers: [
                    ClosureHandler { job in
                        started.record(job)
                        await gate.wait()
                        return .complete
                    }
                ], conninfo: conninfo
            ) {
                $0.shutdownTimeout = .seconds(1)
                $0.shutdownGrace = .seconds(1)
            }
            #expect(await eventually { started.totalCalls == 3 })
            proxy.cut()
            gate.open()
            try await Task.sleep(for: .milliseconds(300))
            let clock = ContinuousClock()
            let stopping = clock.now
            let stopped = await finishes(within: .seconds(12)) { try await worker.stop() }
            #expect(stopped, "the worker must exit while the database is unreachable")
            #expect(clock.now - stopping < .seconds(6))
            // Nothing was lost: the jobs are still there, leased, for the reaper.
            #expect(
                try await database.count("SELECT count(*) FROM \(database.schema).jobs WHERE state = 'running'")
                    == 3)
        }
    }

    @Test("a handler whose lease is taken away is cancelled")
    func lostLeaseCancelsHandler() async throws {
        try await withQueueDatabase { database in
            let id = try #require(
                try await database.scalar("SELECT \(database.schema).enqueue('test.job') AS id", as: Int64.self))
            let cancelled = Atomic<Bool>(false)
            let started = Recorder()
            let worker = RunningWorker(
                database,
                handlers: [
                    ClosureHandler { job in
                        started.record(job)
                        do {
                            try await Task.sleep(for: .seconds(60))
                        } catch {
                            cancelled.store(true, ordering: .sequentiallyConsistent)
                            throw error
                        }
                        return .complete
                    }
                ]
            ) { $0.lease = .seconds(3) }
            #expect(await eventually { started.totalCalls == 1 })
            try await database.query(
                "UPDATE \(database.schema).jobs SET locked_by = 'another-replica' WHERE id = $1", [id])
            // The renewer finds the lease gone and cancels the handler, whose release is then
            // handled (refused: the job is not this replica's any more).
            #expect(await worker.worker.testSignals.leasesLost.wait { $0.contains(id) } != nil)
            #expect(await worker.worker.testSignals.recorded.wait { $0.jobID == id } != nil)
            let wasCancelled = cancelled.load(ordering: .sequentiallyConsistent)
            #expect(wasCancelled)
            try await worker.stop()
        }
    }

    @Test("an old attempt of a re-claimed job finishing does not take the new attempt off the worker's books")
    func attemptsKeyedSeparately() async throws {
        try await withQueueDatabase { database in
            try await database.query(
                "INSERT INTO \(database.schema).jobs (kind, max_attempts) VALUES ('test.job', 2)")
            let first = Gate()
            let second = Gate()
            let secondStarted = Gate()
            let recorder = Recorder()
            let firstReturned = Atomic<Bool>(false)
            let worker = RunningWorker(
                database,
                handlers: [
                    ClosureHandler { job in
                        recorder.record(job)
                        if job.attempt == 2 { secondStarted.open() }
                        await (job.attempt == 1 ? first : second).wait()
                        if job.attempt == 1 { firstReturned.store(true, ordering: .sequentiallyConsistent) }
                        return .complete
                    }
                ]
            ) {
                $0.lease = .seconds(1)
                $0.renewsLeases = false
                $0.reapInterval = .milliseconds(200)
                $0.pollInterval = .milliseconds(100)
            }
            // The first attempt's lease runs out; the same worker reaps and claims it again.
            #expect(await worker.worker.testSignals.reaped.wait { $0 > 0 } != nil)
            await secondStarted.wait()
            #expect(recorder.totalCalls == 2)
            #expect(worker.worker.inFlightCount == 2)
            first.open()
            // The old attempt leaves the books (its handler returned and its refused outcome was
            // handled, which is signalled after the books changed): a wrong removal of the new
            // one would show now.
            #expect(await worker.worker.testSignals.recorded.wait { $0.attempt == 1 } != nil)
            let returned = firstReturned.load(ordering: .sequentiallyConsistent)
            #expect(returned)
            #expect(worker.worker.inFlightCount == 1, "the second attempt is still running here")
            second.open()
            try await worker.stop()
        }
    }

    @Test("requeueing a dead letter keeps the job's attempt limit and concurrency key")
    func requeueKeepsMaxAttempts() async throws {
        try await withQueueDatabase { database in
            try await database.script(
                """
                INSERT INTO \(database.schema).dead_letter_jobs
                    (job_id, kind, payload, priority, attempts, max_attempts, reason, created_at, concurrency_key)
                VALUES (1, 'test.job', '{}', 0, 3, 3, 'attempts_exhausted', now(), 'client:c1')
                """)
            let dead = try #require(
                try await database.scalar("SELECT id FROM \(database.schema).dead_letter_jobs", as: Int64.self))
            let job = try #require(
                try await database.scalar(
                    "SELECT \(database.schema).requeue_dead_letter($1) AS id", [dead], as: Int64.self)
            )
            #expect(
                try await database.scalar(
                    "SELECT max_attempts FROM \(database.schema).jobs WHERE id = $1", [job], as: Int.self) == 3)
            #expect(
                try await database.scalar(
                    "SELECT concurrency_key FROM \(database.schema).jobs WHERE id = $1", [job], as: String.self)
                    == "client:c1")
        }
    }

    @Test("two transactions enqueueing the same unique key at once: one job, no error")
    func concurrentUniqueKey() async throws {
        try await withQueueDatabase { database in
            let one = try await database.connect()
            let two = try await database.connect()
            try await one.execute(script: "BEGIN", name: "begin")
            let first = try await one.query(
                PQQuery("", "SELECT \(database.schema).enqueue('test.job', unique_key => 'k') AS id"))
            #expect(try first.first?.decodeIfPresent("id", as: Int64.self) != nil)
            // The second waits for the first transaction, then finds the key taken.
            async let second = two.query(
                PQQuery("", "SELECT \(database.schema).enqueue('test.job', unique_key => 'k') AS id"))
            try await Task.sleep(for: .milliseconds(200))
            try await one.execute(script: "COMMIT", name: "commit")
            #expect(try await second.first?.decodeIfPresent("id", as: Int64.self) == nil)
            #expect(try await database.count("SELECT count(*) FROM \(database.schema).jobs") == 1)
            await one.close()
            await two.close()
        }
    }
}
