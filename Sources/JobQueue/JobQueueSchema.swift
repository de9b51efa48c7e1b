import Foundation
import LibPQ
import Logging

/// Where one queue lives: the PostgreSQL schema that holds its tables and functions, the
/// `NOTIFY` channel on which its inserts wake the workers, and the prefix of its metrics' names.
///
/// JobQueue owns its schema: ``migrations`` are the queue's tables, indexes, triggers and
/// functions, created in the schema named here, and ``migrate(_:logger:)`` applies them, recording
/// each in `<name>.schema_migrations` (owner `job_queue`). Every statement of the queue's types (``JobWorker``,
/// ``JobEnqueuer``, ``DeadLetters``, ``PausedKinds``, ``QueueStatistics``, ``JobAttemptHistory``)
/// names the schema given here, so queues in different schemas of one database are independent.
///
/// ```swift
/// let queue = try JobQueueSchema(name: "billing_queue")  // channel billing_queue_jobs
/// try await PQConnection.withConnection(url, logger: logger) { connection in
///     try await queue.migrate(connection, logger: logger)
/// }
/// ```
public struct JobQueueSchema: Sendable, Hashable, CustomStringConvertible {
    /// The PostgreSQL schema (a plain lower-case identifier).
    public let name: String
    /// The channel of the insert trigger's `NOTIFY` and the workers' `LISTEN`.
    public let channel: String
    /// The start of every metric's name: `<prefix>_jobs_total`, `<prefix>_job_duration_seconds`, ...
    public let metricPrefix: String
    /// The queue's statements in this schema, built once.
    let statements: QueueStatements

    /// Why a name was refused.
    public struct InvalidName: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// - Parameters:
    ///   - name: the schema: lower-case letters, digits and `_`, not starting with a digit, at most
    ///     63 characters (PostgreSQL's limit).
    ///   - channel: the same rules; nil: `<name>_jobs`.
    ///   - metricPrefix: letters, digits and `_`; nil: `name`.
    /// - Throws: ``InvalidName`` when one of them does not follow its rules.
    public init(name: String = "job_queue", channel: String? = nil, metricPrefix: String? = nil) throws {
        let channel = channel ?? name + "_jobs"
        let metricPrefix = metricPrefix ?? name
        for (label, value) in [("schema name", name), ("channel", channel)] where !Self.isIdentifier(value) {
            throw InvalidName(
                description: "\(label) \"\(value)\" is not a plain identifier "
                    + "(a-z, 0-9 and _, not starting with a digit, at most 63 characters)")
        }
        guard Self.isIdentifier(metricPrefix.lowercased()) else {
            throw InvalidName(
                description: "metric prefix \"\(metricPrefix)\" may hold only letters, digits and _, "
                    + "not starting with a digit")
        }
        self.name = name
        self.channel = channel
        self.metricPrefix = metricPrefix
        self.statements = QueueStatements(schema: name)
    }

    /// Schema `job_queue`, channel `job_queue_jobs`, metrics `job_queue_*`.
    public static let `default`: JobQueueSchema = {
        do { return try JobQueueSchema() } catch { fatalError("\(error)") }
    }()

    private static func isIdentifier(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, text.utf8.count <= 63 else { return false }
        let lower: ClosedRange<Unicode.Scalar> = "a"..."z"
        let digits: ClosedRange<Unicode.Scalar> = "0"..."9"
        return (lower.contains(first) || first == "_")
            && text.unicodeScalars.allSatisfy { lower.contains($0) || digits.contains($0) || $0 == "_" }
    }

    /// The owner of the queue's migrations in a ledger: JobQueue numbers its own line, 1, 2, 3, ...
    public static let migrationOwner = "job_queue"

    /// The queue's migrations for this schema and channel: the files of `sql/job_queue/`
    /// (compiled in by the EmbedSQL plugin) with `{{schema}}` and `{{channel}}` filled in. A
    /// program whose own migrations share the schema and its ledger puts them in a line of its
    /// own, after this one (they build on the queue's tables).
    public var migrations: [Migration] {
        EmbeddedSQL.migrations.map { template in
            Migration(
                owner: Self.migrationOwner, version: template.version, name: template.name,
                sql: render(template.sql))
        }
    }

    /// The versions the queue's migrations 1, 2, 3, ... had while the owners of a schema shared one
    /// sequence, for moving a ledger recorded then (``LedgerMove``).
    public static let formerLedger = LedgerMove(formerVersions: [migrationOwner: [1, 3, 4, 5, 7, 8, 10, 13]])

    /// Fills in a template's placeholders.
    func render(_ template: String) -> String {
        template.replacingOccurrences(of: "{{schema}}", with: name)
            .replacingOccurrences(of: "{{channel}}", with: channel)
    }

    /// Applies ``migrations`` with the ledger `<name>.schema_migrations`.
    public var migrator: Migrator { Migrator(schema: name, migrations: migrations, formerLedger: Self.formerLedger) }

    /// Creates the schema or brings it up to date; returns the migrations applied by this call.
    @discardableResult
    public func migrate(_ connection: PQConnection, logger: Logger) async throws -> [Migration] {
        try await migrator.migrate(connection, logger: logger)
    }

    public var description: String { name }

    public static func == (lhs: JobQueueSchema, rhs: JobQueueSchema) -> Bool {
        (lhs.name, lhs.channel, lhs.metricPrefix) == (rhs.name, rhs.channel, rhs.metricPrefix)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(channel)
        hasher.combine(metricPrefix)
    }
}
