import Foundation
import LibPQ

/// The worker's claims and leases, run with the statements of `sql/job_queue/statements/claim.sql`
/// (``QueueStatements``); the statements that end attempts are in `finish.sql`, run by the
/// ``Finisher``, and every one of them is guarded by `locked_by` and `attempt`, so a replica that
/// lost its lease changes nothing.
struct JobStore: Sendable {
    let workerID: String
    let statements: QueueStatements

    init(workerID: String, schema: JobQueueSchema) {
        self.workerID = workerID
        self.statements = schema.statements
    }

    // MARK: Claiming

    /// What one claim took: the jobs to run, and rows that could not be read as jobs (each is
    /// already leased to this replica and goes to the dead letters with the reason).
    struct Claimed {
        var jobs: [Job] = []
        var unreadable: [(job: Job, reason: String)] = []
        var count: Int { jobs.count + unreadable.count }
    }

    /// The claim of up to `limit` runnable jobs of `kinds`, in priority order, run alone or at
    /// the end of a transaction that writes outcomes; ``claimed(_:maxAttempts:)`` reads its rows.
    /// - Parameter keyLimits: per kind, the most jobs with one `concurrency_key` running at once
    ///   across all replicas; kinds not listed have no limit.
    func claimStatement(kinds: [String], keyLimits: [String: Int], limit: Int, lease: Duration) -> PQStatement {
        let keyed = keyLimits.sorted { $0.key < $1.key }
        return PQStatement(
            statements.claimJobs,
            [
                PQArray(kinds), limit, workerID, PQInterval(lease), PQArray(keyed.map(\.key)),
                PQArray(keyed.map(\.value)),
            ])
    }

    /// The jobs of a claim's rows, in priority order, and the rows that could not be read. Rows
    /// are decoded one by one: a row that cannot be read does not hold up the rest of its batch.
    func claimed(_ result: PQResult, maxAttempts: (String) -> Int) throws -> Claimed {
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
                    id: id, kind: kind, payload: PQJSON("{}"), attempt: attempt, maxAttempts: attempt,
                    createdAt: Date(timeIntervalSince1970: 0), runAt: Date(timeIntervalSince1970: 0))
                claimed.unreadable.append((placeholder, "the job row could not be read: \(error)"))
            }
        }
        claimed.jobs.sort { ($0.priority, $0.runAt, $0.id) < ($1.priority, $1.runAt, $1.id) }
        return claimed
    }

    // MARK: Leases

    /// Extends the leases of the jobs this replica holds; returns those it no longer holds.
    func extendLeases(_ connection: PQConnection, ids: [Int64], lease: Duration) async throws -> [Int64] {
        try await connection.query(statements.extendLeases, [PQArray(ids), workerID, PQInterval(lease)])
        let lost = try await connection.query(statements.leasesLost, [PQArray(ids), workerID])
        return try lost.rows.map { try $0.decode("id", as: Int64.self) }
    }

    /// Returns expired leases of any replica to the queue; the jobs reaped, by kind.
    func reapExpiredLeases(
        _ connection: PQConnection, defaultMaxAttempts: Int, batch: Int = 500
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

    /// A key row that `repair_concurrency_keys` mended: `was` is `missing`, `late`, `parked` (a
    /// race left it so) or `limit_raised` (parked under a lower limit than this replica's).
    struct RepairedKey: Sendable {
        let kind: String
        let concurrencyKey: String
        let priority: Int
        let was: String
    }

    /// Mends the key rows of `kinds` that cannot be right (sql/job_queue/008); one replica at a
    /// time (the others get nothing back).
    func repairConcurrencyKeys(
        _ connection: PQConnection, kinds: [String], keyLimits: [String: Int]
    ) async throws -> [RepairedKey] {
        let keyed = keyLimits.sorted { $0.key < $1.key }
        let result = try await connection.query(
            statements.repairConcurrencyKeys,
            [PQArray(kinds), PQArray(keyed.map(\.key)), PQArray(keyed.map(\.value))])
        return try result.rows.map {
            RepairedKey(
                kind: try $0.decode("kind"), concurrencyKey: try $0.decode("concurrency_key"),
                priority: try $0.decode("priority"), was: try $0.decode("was"))
        }
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

    /// A job whose attempt a shutdown (or a lost lease) cut short, or that nothing will run: back
    /// to the queue in its place.
    static let releasedAtShutdown = Resolution.release(
        reason: "released at shutdown; this attempt does not count", wait: nil)

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
