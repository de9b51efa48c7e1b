import Foundation
import LibPQ

/// The queue's statements. Every statement that ends an attempt is guarded by `locked_by` and
/// `attempt`, so a replica that lost its lease changes nothing.
///
/// The guards test `locked_by` but not `state = 'running'`: every way out of `running` clears
/// `locked_by`, so the first implies the second, and leaving `state` out keeps the planner on the
/// primary key. With it, a queue table's stale statistics can make `jobs_lease_idx` look
/// cheaper, and the statement then visits every running job of every replica.
struct JobStore: Sendable {
    let workerID: String
    let statements: QueueStatements

    init(workerID: String, schema: JobQueueSchema) {
        self.workerID = workerID
        self.statements = schema.statements
    }

    // MARK: Claiming

    /// One claim, in one round trip: `<schema>.claim_jobs` (sql/job_queue/004) takes up to the batch
    /// of runnable jobs of the kinds this replica runs and no operator paused, in (priority,
    /// run_at, id) order, within the per-key limits of the kinds that have one. Why it is built
    /// as it is (per-key heads, SKIP LOCKED on keys, running jobs counted in a new snapshot) is in
    /// the migration's comment. The function carries its own planner settings (no sorts, bitmap or
    /// sequential scans, no JIT): a queue table's statistics are always stale, and these keep its
    /// plans walking the claim indexes in order whatever the statistics say.
    static func claim(_ schema: String) -> PostgresQuery {
        PostgresQuery(
            "\(schema).claimJobs",
            """
            SELECT * FROM \(schema).claim_jobs(
                ARRAY(SELECT unnest($1::text[]) EXCEPT SELECT kind FROM \(schema).paused_kinds),
                $5::text[], $6::int[], $2, $3, $4::interval)
            """)
    }

    /// What one claim took: the jobs to run, and rows that could not be read as jobs (each is
    /// already leased to this replica and goes to the dead letters with the reason).
    struct Claimed {
        var jobs: [Job] = []
        var unreadable: [(job: Job, reason: String)] = []
        var count: Int { jobs.count + unreadable.count }
    }

    /// Claims up to `limit` runnable jobs of `kinds`, in priority order. Rows are decoded one by
    /// one: a row that cannot be read does not hold up the rest of its batch.
    /// - Parameter keyLimits: per kind, the most jobs with one `concurrency_key` running at once
    ///   across all replicas; kinds not listed have no limit.
    func claim(
        _ connection: PostgresConnection, kinds: [String], keyLimits: [String: Int], limit: Int, lease: Duration,
        maxAttempts: (String) -> Int
    ) async throws -> Claimed {
        let keyed = keyLimits.sorted { $0.key < $1.key }
        let result = try await connection.query(
            statements.claimJobs,
            [
                PostgresArray(kinds), limit, workerID, PostgresInterval(lease), PostgresArray(keyed.map(\.key)),
                PostgresArray(keyed.map(\.value)),
            ])
        var claimed = Claimed()
        claimed.jobs.reserveCapacity(result.count)
        for row in result.rows {
            let id: Int64 = try row.decode("id")
            let kind: String = try row.decode("kind")
            let attempt: Int = try row.decode("attempt")
            do {
                claimed.jobs.append(
                    Job(
                        id: id, kind: kind, payload: try row.decode("payload"), priority: try row.decode("priority"),
                        attempt: attempt, maxAttempts: try row.decodeIfPresent("max_attempts") ?? maxAttempts(kind),
                        createdAt: try row.decode("created_at"), runAt: try row.decode("run_at"),
                        released: try row.decode("released"), concurrencyKey: try row.decodeIfPresent("concurrency_key")
                    ))
            } catch {
                let placeholder = Job(
                    id: id, kind: kind, payload: PostgresJSON("{}"), attempt: attempt, maxAttempts: attempt,
                    createdAt: Date(timeIntervalSince1970: 0), runAt: Date(timeIntervalSince1970: 0))
                claimed.unreadable.append((placeholder, "the job row could not be read: \(error)"))
            }
        }
        claimed.jobs.sort { ($0.priority, $0.runAt, $0.id) < ($1.priority, $1.runAt, $1.id) }
        return claimed
    }

    // MARK: Leases

    /// Rows are locked in id order and rows locked by someone else are skipped: the outcome
    /// writers lock the same rows, and renewal must never wait for them or deadlock with them. A
    /// row skipped now is renewed next time, long before its lease runs out.
    static func extendLeases(_ schema: String) -> PostgresQuery {
        PostgresQuery(
            "\(schema).extendLeases",
            """
            UPDATE \(schema).jobs SET locked_until = now() + $3::interval
            WHERE id IN (
                SELECT id FROM \(schema).jobs
                WHERE id = ANY($1::bigint[]) AND locked_by = $2
                ORDER BY id
                FOR UPDATE SKIP LOCKED)
            """)
    }

    /// Jobs among `ids` that another replica holds now (the lease ran out and was taken back).
    static func leasesLost(_ schema: String) -> PostgresQuery {
        PostgresQuery(
            "\(schema).leasesLost",
            """
            SELECT id FROM \(schema).jobs
            WHERE id = ANY($1::bigint[]) AND locked_by IS DISTINCT FROM $2
            """)
    }

    /// Extends the leases of the jobs this replica holds; returns those it no longer holds.
    func extendLeases(_ connection: PostgresConnection, ids: [Int64], lease: Duration) async throws -> [Int64] {
        try await connection.query(statements.extendLeases, [PostgresArray(ids), workerID, PostgresInterval(lease)])
        let lost = try await connection.query(statements.leasesLost, [PostgresArray(ids), workerID])
        return try lost.rows.map { try $0.decode("id", as: Int64.self) }
    }

    static func reap(_ schema: String) -> PostgresQuery {
        PostgresQuery(
            "\(schema).reapExpiredLeases", "SELECT kind, jobs FROM \(schema).reap_expired_leases($1, $2)")
    }

    /// Returns expired leases of any replica to the queue; the jobs reaped, by kind.
    func reapExpiredLeases(
        _ connection: PostgresConnection, defaultMaxAttempts: Int, batch: Int = 500
    ) async throws
        -> [String: Int]
    {
        var reaped: [String: Int] = [:]
        for row in try await connection.query(statements.reapExpiredLeases, [defaultMaxAttempts, batch]).rows {
            reaped[try row.decode("kind")] = try row.decode("jobs")
        }
        return reaped
    }

    // MARK: Repairing keys

    static func repairKeys(_ schema: String) -> PostgresQuery {
        PostgresQuery(
            "\(schema).repairConcurrencyKeys",
            "SELECT kind, concurrency_key, priority, was FROM \(schema).repair_concurrency_keys($1, $2, $3)")
    }

    /// A key row that `repair_concurrency_keys` mended: `was` is `missing`, `late`, `parked` (a
    /// race left it so) or `limit_raised` (parked under a lower limit than this replica's).
    struct RepairedKey: Sendable {
        let kind: String
        let concurrencyKey: String
        let priority: Int
        let was: String
    }

    /// Mends the key rows of `kinds` that cannot be right (sql/job_queue/013); one replica at a
    /// time (the others get nothing back).
    func repairConcurrencyKeys(
        _ connection: PostgresConnection, kinds: [String], keyLimits: [String: Int]
    ) async throws -> [RepairedKey] {
        let keyed = keyLimits.sorted { $0.key < $1.key }
        let result = try await connection.query(
            statements.repairConcurrencyKeys,
            [PostgresArray(kinds), PostgresArray(keyed.map(\.key)), PostgresArray(keyed.map(\.value))])
        return try result.rows.map {
            RepairedKey(
                kind: try $0.decode("kind"), concurrencyKey: try $0.decode("concurrency_key"),
                priority: try $0.decode("priority"), was: try $0.decode("was"))
        }
    }

    // MARK: Finishing
    //
    // Every time is the database's: `started_at` is the claim's `attempted_at`, `finished_at` is
    // the database's clock when the outcome is written less `f.ago`, how long ago the handler
    // returned as the worker measured it (outcomes wait a little to be written together), and a
    // retry's `run_at` is now() plus the wait. Leases use the same clock, so a replica whose
    // clock is off cannot schedule early or late.

    /// `finished_at` of an attempt: when its handler returned, on the database's clock.
    private static let finishedAt = "greatest(coalesce(j.attempted_at, now()), clock_timestamp() - f.ago)"

    static func complete(_ schema: String) -> PostgresQuery {
        PostgresQuery(
            "\(schema).completeJobs",
            """
            WITH f AS (
                SELECT * FROM unnest($1::bigint[], $2::int[], $4::interval[]) AS f(id, attempt, ago)
            ), done AS (
                DELETE FROM \(schema).jobs j USING f
                WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
                RETURNING j.id, j.kind, j.attempt, j.attempted_at, \(finishedAt) AS finished_at
            )
            INSERT INTO \(schema).job_attempts (job_id, kind, attempt, worker_id, started_at, finished_at, outcome)
            SELECT id, kind, attempt, $3, coalesce(attempted_at, finished_at), finished_at, 'succeeded' FROM done
            RETURNING job_id
            """)
    }

    static func cancel(_ schema: String) -> PostgresQuery {
        PostgresQuery(
            "\(schema).cancelJobs",
            """
            WITH f AS (
                SELECT * FROM unnest($1::bigint[], $2::int[], $4::interval[], $5::text[]) AS f(id, attempt, ago, error)
            ), done AS (
                DELETE FROM \(schema).jobs j USING f
                WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
                RETURNING j.id, j.kind, j.attempt, j.attempted_at, \(finishedAt) AS finished_at, f.error
            )
            INSERT INTO \(schema).job_attempts (job_id, kind, attempt, worker_id, started_at, finished_at, outcome, \
            error)
            SELECT id, kind, attempt, $3, coalesce(attempted_at, finished_at), finished_at, 'cancelled', error FROM done
            RETURNING job_id
            """)
    }

    static func retry(_ schema: String) -> PostgresQuery {
        PostgresQuery(
            "\(schema).retryJobs",
            """
            WITH f AS (
                SELECT * FROM unnest($1::bigint[], $2::int[], $4::interval[], $5::text[], $6::interval[])
                    AS f(id, attempt, ago, error, wait)
            ), back AS (
                UPDATE \(schema).jobs j
                SET state = 'available', locked_by = NULL, locked_until = NULL, run_at = now() + f.wait, last_error = \
            f.error
                FROM f
                WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
                RETURNING j.id, j.kind, j.attempt, j.attempted_at, \(finishedAt) AS finished_at, f.error
            )
            INSERT INTO \(schema).job_attempts (job_id, kind, attempt, worker_id, started_at, finished_at, outcome, \
            error)
            SELECT id, kind, attempt, $3, coalesce(attempted_at, finished_at), finished_at, 'failed', error FROM back
            RETURNING job_id
            """)
    }

    /// Back to the queue without spending the attempt. With a `wait` (a database failure), the
    /// job runs again after it and `released` counts one more; without (shutdown), it keeps its
    /// place in the queue.
    static func release(_ schema: String) -> PostgresQuery {
        PostgresQuery(
            "\(schema).releaseJobs",
            """
            WITH f AS (
                SELECT * FROM unnest($1::bigint[], $2::int[], $4::interval[], $5::text[], $6::interval[])
                    AS f(id, attempt, ago, error, wait)
            ), back AS (
                UPDATE \(schema).jobs j
                SET state = 'available', locked_by = NULL, locked_until = NULL, attempt = j.attempt - 1,
                    run_at = CASE WHEN f.wait IS NULL THEN j.run_at ELSE now() + f.wait END,
                    released = j.released + CASE WHEN f.wait IS NULL THEN 0 ELSE 1 END
                FROM f
                WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
                RETURNING j.id, j.kind, f.attempt, j.attempted_at, \(finishedAt) AS finished_at, f.error
            )
            INSERT INTO \(schema).job_attempts (job_id, kind, attempt, worker_id, started_at, finished_at, outcome, \
            error)
            SELECT id, kind, attempt, $3, coalesce(attempted_at, finished_at), finished_at, 'released', error
            FROM back
            RETURNING job_id
            """)
    }

    static func snooze(_ schema: String) -> PostgresQuery {
        PostgresQuery(
            "\(schema).snoozeJobs",
            """
            WITH f AS (
                SELECT * FROM unnest($1::bigint[], $2::int[], $4::text[], $5::interval[]) \
            AS f(id, attempt, reason, wait)
            )
            UPDATE \(schema).jobs j
            SET state = 'available', locked_by = NULL, locked_until = NULL, attempt = j.attempt - 1,
                run_at = now() + f.wait, last_error = f.reason
            FROM f
            WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
            RETURNING j.id AS job_id
            """)
    }

    static func deadLetter(_ schema: String) -> PostgresQuery {
        PostgresQuery(
            "\(schema).deadLetterJobs",
            """
            WITH f AS (
                SELECT * FROM unnest($1::bigint[], $2::int[], $4::interval[], $5::text[], $6::text[], $7::int[])
                    AS f(id, attempt, ago, error, reason, max_attempts)
            ), dead AS (
                DELETE FROM \(schema).jobs j USING f
                WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
                RETURNING j.*, \(finishedAt) AS finished_at, f.error, f.reason, f.max_attempts AS effective_max_attempts
            ), letters AS (
                INSERT INTO \(schema).dead_letter_jobs
                    (job_id, kind, payload, priority, attempts, max_attempts, reason, last_error, unique_key, \
            concurrency_key,
                     created_at, dead_at)
                SELECT id, kind, payload, priority, attempt, effective_max_attempts, reason, error, unique_key, \
            concurrency_key,
                       created_at, finished_at
                FROM dead
            )
            INSERT INTO \(schema).job_attempts (job_id, kind, attempt, worker_id, started_at, finished_at, outcome, \
            error)
            SELECT id, kind, attempt, $3, coalesce(attempted_at, finished_at), finished_at, 'failed', error FROM dead
            RETURNING job_id
            """)
    }
}

/// How an attempt ends, once the retry policy has been applied.
enum Resolution: Sendable {
    case complete
    case cancel(reason: String)
    /// Runs again after `wait`.
    case retry(error: String, wait: Duration)
    case deadLetter(reason: DeadLetterReason, error: String)
    /// Back to the queue, the attempt not counted: at shutdown (`wait` nil: it keeps its place),
    /// or after `wait` when the database, not the job, failed.
    case release(reason: String, wait: Duration?)
    /// Not attempted: the handler chose to wait (e.g. for a receiver's circuit to close). Back
    /// to the queue after `wait`, nothing counted and no attempt row written; `reason` goes to
    /// `last_error`.
    case snooze(reason: String, wait: Duration)

    var outcomeLabel: String {
        switch self {
        case .complete: "succeeded"
        case .cancel: "cancelled"
        case .retry: "retried"
        case .deadLetter: "dead_lettered"
        case .release: "released"
        case .snooze: "snoozed"
        }
    }
}

/// Why a job went to the dead letters: the `reason` column, a short code DBAs filter on.
///
/// A struct, not an enum, so that a module with handlers of its own can add reasons (the
/// `reason` column's check constraint lists them all).
public struct DeadLetterReason: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }

    /// Every attempt failed.
    public static let attemptsExhausted = DeadLetterReason("attempts_exhausted")
    /// The handler said retrying cannot help.
    public static let permanentFailure = DeadLetterReason("permanent_failure")

    public var description: String { rawValue }
}
