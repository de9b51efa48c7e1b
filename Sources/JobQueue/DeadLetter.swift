import Foundation
import LibPQ

/// A job that gave up, as kept in the dead-letter table.
public struct DeadLetter: Sendable, Equatable {
    /// The dead letter's own id (not the job's).
    public let id: Int64
    public let jobID: Int64
    public let kind: String
    /// `attempts_exhausted`, `permanent_failure`, or a reason a handler gave (e.g. `endpoint_disabled`).
    public let reason: String
    public let attempts: Int
    public let maxAttempts: Int
    public let lastError: String?
    /// The payload's JSON text as stored.
    public let payload: PQJSON
    public let createdAt: Date
    public let deadAt: Date
    /// When it was put back in the queue, and as which job.
    public let requeuedAt: Date?
    public let requeuedJobID: Int64?

    static let columns = """
        id, job_id, kind, reason, attempts, max_attempts, last_error, payload, created_at, dead_at, requeued_at,
        requeued_job_id
        """

    init(_ row: PQRow) throws {
        id = try row.decode("id")
        jobID = try row.decode("job_id")
        kind = try row.decode("kind")
        reason = try row.decode("reason")
        attempts = try row.decode("attempts")
        maxAttempts = try row.decode("max_attempts")
        lastError = try row.decodeIfPresent("last_error")
        payload = try row.decode("payload")
        createdAt = try row.decode("created_at")
        deadAt = try row.decode("dead_at")
        requeuedAt = try row.decodeIfPresent("requeued_at")
        requeuedJobID = try row.decodeIfPresent("requeued_job_id")
    }
}

/// One finished attempt of a job, from the attempts history.
public struct JobAttemptRecord: Sendable, Equatable {
    public let attempt: Int
    /// `succeeded`, `failed`, `lost`, `released` or `cancelled`.
    public let outcome: String
    public let workerID: String
    public let startedAt: Date
    public let finishedAt: Date
    public let error: String?

    init(_ row: PQRow) throws {
        attempt = try row.decode("attempt")
        outcome = try row.decode("outcome")
        workerID = try row.decode("worker_id")
        startedAt = try row.decode("started_at")
        finishedAt = try row.decode("finished_at")
        error = try row.decodeIfPresent("error")
    }
}
