import JobQueue
import Testing

/// Three replicas (16 slots, claims of 25) work off 3,000 jobs inserted at once: each job is
/// handled exactly once, every attempt is recorded as succeeded, and the work is shared.
/// `configure` adjusts each replica (e.g. to go through PgBouncer).
func expectReplicasHandleEachJobOnce(
    _ database: TestDatabase, configure: @escaping (inout JobWorkerConfiguration) -> Void = { _ in }
) async throws {
    try await database.query(
        """
        INSERT INTO \(database.schema).jobs (kind, payload) SELECT 'test.job', jsonb_build_object('n', n) \
        FROM generate_series(1, 3000) n
        """
    )
    let recorder = Recorder()
    let handler = ClosureHandler { job in
        recorder.record(job)
        if job.id % 7 == 0 { await Task.yield() }
        return .complete
    }
    let drained = try await drainWithWorkers(database, replicas: 3, handlers: [handler], timeout: .seconds(90)) {
        $0.concurrency = 16
        $0.claimBatchSize = 25
        configure(&$0)
    }
    #expect(drained)
    #expect(recorder.handledIDs.count == 3000)
    #expect(recorder.duplicates.isEmpty)
    #expect(recorder.totalCalls == 3000)
    #expect(
        try await database.count("SELECT count(*) FROM \(database.schema).job_attempts WHERE outcome = 'succeeded'")
            == 3000)
    let byWorker = try await database.count("SELECT count(DISTINCT worker_id) FROM \(database.schema).job_attempts")
    #expect(byWorker >= 2, "the work should be shared between replicas")
}
