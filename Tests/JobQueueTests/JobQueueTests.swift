import Foundation
import JobQueue
import LibPQ
import Synchronization
@testable import TestSupport
import Testing

@Suite("Job queue against PostgreSQL", .timeLimit(.minutes(4)))
struct JobQueueTests {
    @Test("several replicas claim thousands of jobs; each job is handled exactly once")
    func claimExclusivity() async throws {
        try await withQueueDatabase { database in
            try await expectReplicasHandleEachJobOnce(database)
        }
    }

    @Test("an idle worker starts a fresh job well before its poll interval")
    func wakeUpOnNotify() async throws {
        try await withQueueDatabase { database in
            let recorder = Recorder()
            let worker = RunningWorker(
                database,
                handlers: [
                    ClosureHandler {
                        recorder.record($0); return .complete
                    }
                ]
            ) {
                // A poll this far away cannot be what starts the jobs: only the NOTIFY can.
                $0.pollInterval = .seconds(3600)
            }
            #expect(await eventually { worker.worker.isListening })
            // Let the first empty claim pass so the worker is waiting on its doorbell.
            try await Task.sleep(for: .milliseconds(300))
            var latencies: [Duration] = []
            for _ in 0..<5 {
                let inserted = ContinuousClock.now
                let id = try #require(
                    try await database.scalar("SELECT \(database.schema).enqueue('test.job') AS id", as: Int64.self)
                )
                #expect(await eventually(timeout: .seconds(30), every: .milliseconds(2)) { recorder.calls(id) == 1 })
                latencies.append(try #require(recorder.startTimes(id).first) - inserted)
            }
            try await worker.stop()
            // Tens of milliseconds on an idle machine; the bound leaves room for a loaded CI runner
            // (1 to 2 s seen there with the whole suite running on two cores) and is still two
            // orders of magnitude below the poll.
            #expect(latencies.max()! < .seconds(30), "pick-up latencies \(latencies) should be far below the 1 h poll")
        }
    }

    @Test(
        "a job claimed by a stalled replica is reaped as lost, run elsewhere, and the stale completion changes nothing")
    func leaseExpiry() async throws {
        try await withQueueDatabase { database in
            let stalledGate = Gate()
            let stalledStarted = Gate()
            let stalled = RunningWorker(
                database,
                handlers: [
                    ClosureHandler { _ in
                        stalledStarted.open()
                        await stalledGate.wait()
                        return .complete
                    }
                ]
            ) {
                $0.workerID = "stalled"
                $0.concurrency = 1
                $0.lease = .seconds(2)
                $0.renewsLeases = false
                $0.reapInterval = .seconds(3600)
            }
            let id = try #require(
                try await database.scalar("SELECT \(database.schema).enqueue('test.job') AS id", as: Int64.self))
            await stalledStarted.wait()

            let recorder = Recorder()
            let healthy = RunningWorker(
                database,
                handlers: [
                    ClosureHandler {
                        recorder.record($0); return .complete
                    }
                ]
            ) {
                $0.workerID = "healthy"
                $0.reapInterval = .milliseconds(500)
            }
            // The healthy replica's reaper takes the expired lease back, and its worker runs the
            // job and records the outcome.
            #expect(await healthy.worker.testSignals.reaped.wait { $0 > 0 } != nil)
            #expect(await healthy.worker.testSignals.recorded.wait { $0.jobID == id } != nil)
            #expect(recorder.calls(id) == 1)
            #expect(try await database.count("SELECT count(*) FROM \(database.schema).jobs WHERE id = $1", [id]) == 0)
            // The stalled replica's handler returns: its stale completion is handled (and refused).
            stalledGate.open()
            #expect(await stalled.worker.testSignals.recorded.wait { $0.jobID == id } != nil)
            try await stalled.stop()
            try await healthy.stop()

            let attempts = try await database.query(
                """
                SELECT attempt, worker_id, outcome FROM \(database.schema).job_attempts WHERE job_id = $1 ORDER BY \
                attempt, id
                """,
                [id])
            let summary = try attempts.rows.map {
                let attempt = try $0.decode("attempt", as: Int.self)
                let worker = try $0.decode("worker_id", as: String.self)
                return "\(attempt):\(worker):\(try $0.decode("outcome", as: String.self))"
            }
            #expect(summary == ["1:stalled:lost", "2:healthy:succeeded"])
        }
    }

    @Test("a failing job is retried on its schedule, dead-lettered with its reason, and requeued")
    func retriesAndDeadLetters() async throws {
        try await withQueueDatabase { database in
            let recorder = Recorder()
            let succeed = Gate()
            let succeedFlag = Flag()
            let policy = ScheduleRetryStrategy.schedule([.milliseconds(300), .milliseconds(600)])
            let handler = ClosureHandler(retryStrategy: policy) { job in
                recorder.record(job)
                if succeedFlag.isSet { return .complete }
                throw TestFailure(message: "receiver said no (attempt \(job.attempt))")
            }
            _ = succeed
            let worker = RunningWorker(database, handlers: [handler]) { $0.pollInterval = .milliseconds(50) }
            let id = try #require(
                try await database.scalar(
                    "SELECT \(database.schema).enqueue('test.job', '{\"x\":1}') AS id", as: Int64.self))
            #expect(
                await eventually {
                    (try? await database.count(
                        "SELECT count(*) FROM \(database.schema).dead_letter_jobs WHERE job_id = $1", [id])) == 1
                })
            #expect(recorder.calls(id) == 3)
            // No attempt starts before its scheduled time (the step less 20 % jitter), and none
            // long after it (the step plus 20 %, with slack for polling on a busy machine). The
            // retry's time counts from the failed attempt's finished_at, so the bound below is
            // exact however slow the outcome's write (1 ms for the float's rounding).
            let waits = try await database.query(
                """
                SELECT extract(epoch FROM b.started_at - a.finished_at)::float8 AS wait
                FROM \(database.schema).job_attempts a JOIN \(database.schema).job_attempts b
                  ON b.job_id = a.job_id AND b.attempt = a.attempt + 1
                WHERE a.job_id = $1 ORDER BY a.attempt
                """, [id]
            ).rows.map { try $0.decode("wait", as: Double.self) }
            #expect(waits.count == 2)
            for (wait, step) in zip(waits, [0.3, 0.6]) {
                #expect(wait >= step * 0.8 - 0.001 && wait <= step * 1.2 + 2, "waited \(wait)s for a \(step)s step")
            }

            let letter = try #require(
                try await database.query(
                    """
                    SELECT id, reason, attempts, max_attempts, last_error, payload::text AS payload FROM \
                    \(database.schema).dead_letter_jobs WHERE job_id = $1
                    """,
                    [id]
                ).first)
            #expect(try letter.decode("reason", as: String.self) == "attempts_exhausted")
            #expect(try letter.decode("attempts", as: Int.self) == 3)
            #expect(try letter.decode("max_attempts", as: Int.self) == 3)
            #expect(try letter.decode("last_error", as: String.self).contains("receiver said no (attempt 3)"))
            #expect(try letter.decode("payload", as: String.self) == #"{"x": 1}"#)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(database.schema).job_attempts WHERE job_id = $1 AND outcome = 'failed'",
                    [id])
                    == 3)

            succeedFlag.set()
            let letterID: Int64 = try letter.decode("id")
            let newID = try #require(
                try await database.scalar(
                    "SELECT \(database.schema).requeue_dead_letter($1) AS id", [letterID], as: Int64.self))
            #expect(await eventually { recorder.calls(newID) == 1 })
            #expect(
                try await database.scalar(
                    "SELECT requeued_job_id FROM \(database.schema).dead_letter_jobs WHERE id = $1", [letterID],
                    as: Int64.self) == newID)
            // Requeuing twice is refused with a clear error.
            await #expect(throws: PQError.self) {
                try await database.query("SELECT \(database.schema).requeue_dead_letter($1)", [letterID])
            }
            try await worker.stop()
        }
    }

    @Test("a permanent failure goes to the dead letters at once; a cancel leaves no dead letter")
    func permanentFailureAndCancel() async throws {
        try await withQueueDatabase { database in
            let handler = ClosureHandler { job in
                job.payload.text.contains("cancel")
                    ? .cancel("not needed any more") : .fail("account 42 does not exist")
            }
            let worker = RunningWorker(database, handlers: [handler])
            let failed = try #require(
                try await database.scalar(
                    "SELECT \(database.schema).enqueue('test.job', '{\"a\":\"fail\"}') AS id", as: Int64.self))
            let cancelled = try #require(
                try await database.scalar(
                    "SELECT \(database.schema).enqueue('test.job', '{\"a\":\"cancel\"}') AS id", as: Int64.self))
            #expect(
                await eventually {
                    (try? await database.count("SELECT count(*) FROM \(database.schema).jobs")) == 0
                })
            try await worker.stop()
            let letter = try #require(
                try await database.query(
                    "SELECT reason, last_error, attempts FROM \(database.schema).dead_letter_jobs WHERE job_id = $1",
                    [failed]
                ).first)
            #expect(try letter.decode("reason", as: String.self) == "permanent_failure")
            #expect(try letter.decode("last_error", as: String.self) == "account 42 does not exist")
            #expect(try letter.decode("attempts", as: Int.self) == 1)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM \(database.schema).dead_letter_jobs WHERE job_id = $1", [cancelled]) == 0)
            #expect(
                try await database.scalar(
                    "SELECT outcome FROM \(database.schema).job_attempts WHERE job_id = $1", [cancelled],
                    as: String.self)
                    == "cancelled")
        }
    }

    @Test("graceful shutdown lets in-flight jobs finish and releases the ones that do not")
    func gracefulShutdown() async throws {
        try await withQueueDatabase { database in
            let started = Recorder()
            let handler = ClosureHandler { job in
                started.record(job)
                let seconds = job.payload.text.contains("slow") ? 60.0 : 0.5
                try await Task.sleep(for: .seconds(seconds))
                return .complete
            }
            let worker = RunningWorker(database, handlers: [handler]) { $0.shutdownTimeout = .seconds(2) }
            let quick = try #require(
                try await database.scalar(
                    "SELECT \(database.schema).enqueue('test.job', '{\"s\":\"quick\"}') AS id", as: Int64.self))
            let slow = try #require(
                try await database.scalar(
                    "SELECT \(database.schema).enqueue('test.job', '{\"s\":\"slow\"}') AS id", as: Int64.self))
            #expect(await eventually { started.calls(quick) == 1 && started.calls(slow) == 1 })
            let clock = ContinuousClock()
            let stopping = clock.now
            try await worker.stop()
            #expect(clock.now - stopping < .seconds(10))

            #expect(
                try await database.count("SELECT count(*) FROM \(database.schema).jobs WHERE id = $1", [quick]) == 0
            )
            let row = try #require(
                try await database.query(
                    "SELECT state, attempt, locked_by FROM \(database.schema).jobs WHERE id = $1", [slow]
                ).first)
            #expect(try row.decode("state", as: String.self) == "available")
            #expect(try row.decode("attempt", as: Int.self) == 0, "a released attempt does not count")
            #expect(try row.decodeIfPresent("locked_by", as: String.self) == nil)
            #expect(
                try await database.scalar(
                    "SELECT outcome FROM \(database.schema).job_attempts WHERE job_id = $1", [slow], as: String.self
                )
                    == "released")
        }
    }

}
