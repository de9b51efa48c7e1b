import Foundation
import LibPQ

/// A statement with its parameters, run in the transaction that records a job's outcome.
public typealias BoundStatement = PostgresStatement

/// What a handler decided about one attempt.
///
/// `statements` run in the same transaction as the job's state change, and only if this worker
/// still holds the job (same `locked_by` and `attempt`): a replica that lost its lease cannot
/// write side effects over a newer outcome.
public struct JobOutcome: Sendable {
    public enum Decision: Sendable, Equatable {
        /// Done: the job leaves the queue.
        case complete
        /// Try again after `after`, or on the retry policy's schedule when nil.
        case retry(error: String, after: Duration?)
        /// Retrying cannot help: straight to the dead letters, with `code` in their `reason`
        /// column and `reason` in `last_error`.
        case fail(reason: String, code: DeadLetterReason = .permanentFailure)
        /// The job no longer needs doing: it leaves the queue without a dead letter.
        case cancel(reason: String)
        /// Not now: the job waits `after` without spending an attempt (nothing was tried), with
        /// `reason` in its `last_error`.
        case snooze(after: Duration, reason: String)
    }

    public var decision: Decision
    public var statements: [BoundStatement]

    public init(_ decision: Decision, statements: [BoundStatement] = []) {
        self.decision = decision
        self.statements = statements
    }

    public static let complete = JobOutcome(.complete)

    public static func complete(statements: [BoundStatement]) -> JobOutcome {
        JobOutcome(.complete, statements: statements)
    }

    /// A failed attempt to retry; `after` (e.g. from `Retry-After`) is clamped to the policy's
    /// largest step.
    public static func retry(_ error: String, after: Duration? = nil, statements: [BoundStatement] = []) -> JobOutcome {
        JobOutcome(.retry(error: error, after: after), statements: statements)
    }

    public static func fail(
        _ reason: String, code: DeadLetterReason = .permanentFailure, statements: [BoundStatement] = []
    ) -> JobOutcome {
        JobOutcome(.fail(reason: reason, code: code), statements: statements)
    }

    /// Waits `after` without spending an attempt; statements are not run (nothing happened).
    public static func snooze(_ after: Duration, reason: String) -> JobOutcome {
        JobOutcome(.snooze(after: after, reason: reason))
    }

    public static func cancel(_ reason: String, statements: [BoundStatement] = []) -> JobOutcome {
        JobOutcome(.cancel(reason: reason), statements: statements)
    }
}
