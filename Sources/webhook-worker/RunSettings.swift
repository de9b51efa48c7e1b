import Foundation
import Logging

/// Every setting of `run`, each declared once; ``all`` in the order of the table in
/// docs/operations.md. To add one: declare it here and add it to ``all``, give `RunCommand` its
/// `@Option(RunSettings.name)` property, and read it in `RunCommand.settings(environment:)`; then
/// regenerate the docs' table (`webhook-worker settings --markdown --update docs/operations.md`).
enum RunSettings {
    static let all: [Setting] = [
        databaseURL, concurrency, lease, pollInterval, shutdownTimeout, retrySchedule, requestTimeout, allowHTTP,
        allowPrivateNetworks, proxyURL, operationalURL, operationalSecret, mcpEndpointBase, userAgent, workerID,
        poolSize, listenDatabaseURL,
        preparedStatements, endpointConcurrency, endpointMaxConcurrency, endpointFailureThreshold, endpointCooldown,
        endpointDisableAfter, secretOverlap,
        historyRetention, historyPartition,
        catchUpInterval, catchUpWindow, keyRepairInterval, statementTimeout, lockTimeout, synchronousCommit,
        claimWithOutcomes, claimGatherWait, logFormat, logLevel, httpPort, httpHost, console, consoleReadOnly,
    ]

    // MARK: The database, shared by every command

    static let databaseURL = Setting(
        flag: "database-url", variable: "DATABASE_URL", .text(problem: { _ in nil }),
        default: .absent("libpq's PG* variables"), summary: "PostgreSQL URI or key=value conninfo.",
        logged: .conninfo)
    static let poolSize = Setting(
        flag: "database-pool-size", variable: "WORKER_DB_POOL_SIZE", .integer(1...500), default: .value("8"),
        summary: """
            Connections shared by this replica's jobs (plus five of its own: LISTEN, claiming, lease upkeep, two \
            writing outcomes).
            """)
    static let listenDatabaseURL = Setting(
        flag: "listen-database-url", variable: "WORKER_LISTEN_DATABASE_URL", .text(problem: { _ in nil }),
        default: .absent("--database-url"),
        summary: """
            Where the LISTEN connection goes, when --database-url is a transaction pooler (PgBouncer): PostgreSQL \
            itself.
            """,
        docs: "See [Behind PgBouncer](#behind-pgbouncer).", logged: .conninfo)
    static let preparedStatements = Setting(
        flag: "prepared-statements", variable: "WORKER_PREPARED_STATEMENTS", .onOff, default: .value("on"),
        summary: """
            on: statements are prepared by name and settings kept in the session. off: for a transaction pooler \
            (PgBouncer before 1.21): unnamed statements, settings per transaction.
            """)
    static let statementTimeout = Setting(
        flag: "statement-timeout", variable: "WORKER_STATEMENT_TIMEOUT", .duration(minimum: .milliseconds(100)),
        default: .value("10s"),
        summary: """
            The longest one statement of the worker may run; a job whose statement times out is released and retried \
            later without spending an attempt.
            """)
    static let lockTimeout = Setting(
        flag: "lock-timeout", variable: "WORKER_LOCK_TIMEOUT", .duration(minimum: .milliseconds(10)),
        default: .value("2s"),
        summary: """
            The longest a statement waits for a lock (a table the web app locked); then the job is released and \
            retried later without spending an attempt.
            """)
    static let synchronousCommit = Setting(
        flag: "synchronous-commit", variable: "WORKER_SYNCHRONOUS_COMMIT", .onOff, default: .value("on"),
        summary: """
            on: every outcome is durable before the next job (the default). off: the worker's own commits do not wait \
            for the disk; faster, and a PostgreSQL crash may forget the last moment's outcomes, whose jobs then run \
            again.
            """)

    static let claimWithOutcomes = Setting(
        flag: "claim-with-outcomes", variable: "WORKER_CLAIM_WITH_OUTCOMES", .onOff, default: .value("off"),
        summary: """
            on: the transaction that records deliveries' outcomes also claims the next jobs for their slots (an \
            endpoint's next delivery can be claimed only once the last one's outcome is committed). off: a separate \
            claim after each commit (faster where the database's CPU is the limit).
            """)

    static let claimGatherWait = Setting(
        flag: "claim-gather-wait", variable: "WORKER_CLAIM_GATHER_WAIT", .duration(minimum: .zero, off: true),
        default: .value("50ms"),
        summary: """
            After a claim that took all it asked for (more jobs wait), jobs of 4 or more concurrency keys (endpoints) \
            among them, the next waits until half the slots are free or this long after the last claim began: \
            fewer, larger claims cost the database less per delivery. A queue that drains claims at once. off: claim \
            again as soon as a slot is free.
            """)

    // MARK: Logging, shared by every command

    static let logLevel = Setting(
        flag: "log-level", variable: "LOG_LEVEL",
        .text(problem: { Logger.Level(rawValue: $0.lowercased()) == nil ? levelProblem($0) : nil }),
        default: .value("info"), summary: "trace, debug, info, notice, warning, error, critical.")
    static let logFormat = Setting(
        flag: "log-format", variable: "LOG_FORMAT",
        .text(problem: { LogFormat(rawValue: $0.lowercased()) == nil ? " '\($0)': expected text or json" : nil }),
        default: .value("text"), summary: "text or json (one object per line).")

    private static func levelProblem(_ value: String) -> String {
        " '\(value)': expected trace, debug, info, notice, warning, error or critical"
    }

    // MARK: The queue

    static let concurrency = Setting(
        flag: "concurrency", variable: "WORKER_CONCURRENCY", .integer(1...10_000), default: .value("128"),
        summary: "Jobs in flight per replica.")
    static let lease = Setting(
        flag: "lease", variable: "WORKER_LEASE", .duration(minimum: .seconds(1)), default: .value("60s"),
        summary: "How long a claim holds a job before other replicas may take it back; renewed while the job runs.",
        docs: "More than `--request-timeout` plus 1s.")
    static let pollInterval = Setting(
        flag: "poll-interval", variable: "WORKER_POLL_INTERVAL", .duration(minimum: .milliseconds(10)),
        default: .value("2s"), summary: "Fallback rescan when no notification arrives.")
    static let shutdownTimeout = Setting(
        flag: "shutdown-timeout", variable: "WORKER_SHUTDOWN_TIMEOUT", .duration(minimum: .zero),
        default: .value("30s"), summary: "Time in-flight jobs get to finish on SIGTERM before they are released.")
    static let workerID = Setting(
        flag: "worker-id", variable: "WORKER_ID",
        .text(problem: {
            $0.count > 200 || $0.contains(where: \.isNewline) ? ": at most 200 characters on one line" : nil
        }),
        default: .absent("host-pid-random"), summary: "This replica's name in locked_by and attempt rows.")
    static let keyRepairInterval = Setting(
        flag: "key-repair-interval", variable: "WORKER_KEY_REPAIR_INTERVAL",
        .duration(minimum: .milliseconds(100), off: true), default: .value("30s"),
        summary: """
            How often one replica checks the per-endpoint concurrency keys for one that a race left parked with free \
            slots (or behind its first due job) and mends it (a warning and webhook_worker_keys_repaired_total); \
            off: never.
            """,
        docs: "See [the reconciler](#per-endpoint-limits-and-the-reconciler).")
}
