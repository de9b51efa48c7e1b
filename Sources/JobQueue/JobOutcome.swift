import Foundation
import LibPQ

/// A statement with its parameters, run in the transaction that records a job's outcome.
///
/// Two forms. `BoundStatement(query, bindings)` runs as it is, once per outcome. A row,
/// `BoundStatement.row(of: query, values)`, is one row of a set-based statement: `query` takes one
/// array parameter per column (`unnest($1::uuid[], $2::int[], ...)`), and the outcomes written
/// together run it once, with every row's values in those arrays. A batch of outcomes then costs
/// one statement instead of one per outcome; per-statement work in PostgreSQL (parse, plan,
/// executor start-up, trigger and index setup) is paid once. Rows of one query run where the
/// first of them stands among the batch's statements.
///
/// A row that touches a table partitioned by time gives the earliest time its row may have
/// (`since`): the merged statement receives, after its array parameters, the earliest of its
/// rows' as one scalar parameter. Compared with the partition key (`created_at >=
/// $11::timestamptz`), it lets PostgreSQL leave out the older partitions, with no function called
/// per row or per statement. (A lower bound alone: with an upper bound too, a generic plan takes
/// the pair for a narrow range and may read the partition's `created_at` index across it.)
public struct BoundStatement: Sendable {
    public let query: PQQuery
    /// A plain statement's parameters, or a row's values (one per column).
    public let bindings: [any PQEncodable]
    /// A row of a set-based statement, to be run with other rows of the same query.
    public let isRow: Bool
    /// A row's earliest time (see above); nil for a row without one, and for a plain statement.
    public let since: Date?

    public init(_ query: PQQuery, _ bindings: [any PQEncodable] = []) {
        self.query = query
        self.bindings = bindings
        self.isRow = false
        self.since = nil
    }

    private init(row query: PQQuery, _ values: [any PQEncodable], since: Date?) {
        self.query = query
        self.bindings = values
        self.isRow = true
        self.since = since
    }

    /// One row of `query`, a statement whose parameters are arrays, one per column: `$n` receives
    /// the `n`-th value of every row written with it, in the order of the outcomes. With
    /// `since`, the parameter after the columns receives the earliest `since` of the rows written
    /// with it (every row of `query` must give one).
    public static func row(
        of query: PQQuery, _ values: [any PQEncodable], since: Date? = nil
    ) -> BoundStatement {
        BoundStatement(row: query, values, since: since)
    }

    /// The statements to run for `statements`: plain ones as they are, rows merged into one
    /// statement per query (at the first row's place), each column an array of its rows' values,
    /// then the earliest of their `since` when they have one.
    package static func merged(_ statements: [BoundStatement]) -> [PQStatement] {
        struct Group {
            let query: PQQuery
            /// Where the merged statement stands among the others.
            let index: Int
            var columns: [[String?]]
            var since: Date?
        }
        var merged: [PQStatement?] = []
        var groups: [Group] = []
        var groupOf: [PQQuery: Int] = [:]
        for statement in statements {
            guard statement.isRow else {
                merged.append(PQStatement(statement.query, statement.bindings))
                continue
            }
            let values = statement.bindings.map(\.postgresText)
            guard let number = groupOf[statement.query] else {
                groupOf[statement.query] = groups.count
                groups.append(
                    Group(
                        query: statement.query, index: merged.count, columns: values.map { [$0] },
                        since: statement.since))
                merged.append(nil)
                continue
            }
            // In place: a copy of the group taken out of a dictionary and put back copied every
            // column on every row, quadratic in the rows of a batch (40 % of the worker's CPU
            // with 16 recipients an event).
            precondition(groups[number].columns.count == values.count, "rows of \(statement.query) differ in width")
            precondition(
                (groups[number].since == nil) == (statement.since == nil), "rows of \(statement.query) differ in since")
            for (column, value) in values.enumerated() { groups[number].columns[column].append(value) }
            if let since = statement.since, let earliest = groups[number].since {
                groups[number].since = min(earliest, since)
            }
        }
        for group in groups {
            var parameters: [any PQEncodable] = group.columns.map { PQTextArray($0) }
            if let since = group.since { parameters.append(since) }
            merged[group.index] = PQStatement(group.query, parameters)
        }
        return merged.compactMap { $0 }
    }
}

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
