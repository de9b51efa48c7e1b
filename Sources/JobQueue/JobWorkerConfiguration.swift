import Foundation
import LibPQ

/// How a replica works the queue.
public struct JobWorkerConfiguration: Sendable {
    /// The queue worked: its schema, the channel listened on, and the metrics' prefix.
    public var schema: JobQueueSchema
    /// The `application_name` of the worker's connections; its LISTEN connection's is this
    /// followed by `-listen`.
    public var applicationName: String
    /// A `postgresql://` URI or `key=value` string; nil uses libpq's defaults.
    public var conninfo: String?
    /// Where the LISTEN connection goes; nil: ``conninfo``. Behind a transaction pooler this must
    /// reach PostgreSQL directly (LISTEN is session state), while ``conninfo`` names the pooler.
    public var listenConninfo: String?
    /// Prepare statements by name and keep settings in the session (a direct connection, or a
    /// session-pooling pooler). False for a transaction pooler (PgBouncer `pool_mode =
    /// transaction`): statements are sent unnamed, and the settings of ``sessionSettings`` are
    /// made per transaction instead (``transactionSettings``), so nothing the worker sets
    /// reaches the pooler's other clients.
    public var preparedStatements: Bool
    /// Names this replica in `locked_by` and `job_attempts.worker_id`.
    public var workerID: String
    /// Jobs in flight at once.
    public var concurrency: Int
    /// How long a claim holds a job before another replica may take it back. Renewed every
    /// third of it while the handler runs.
    public var lease: Duration
    /// The fallback rescan when no notification arrives.
    public var pollInterval: Duration
    /// How long in-flight jobs may take to finish after SIGTERM before they are released.
    public var shutdownTimeout: Duration
    /// How failed attempts are retried, for handlers that do not bring their own strategy.
    public var retryStrategy: any RetryStrategy
    /// The most jobs one claim statement takes.
    public var claimBatchSize: Int
    /// After a claim that took all it asked for (more jobs wait), jobs of 4 or more concurrency
    /// keys among them, the next claim waits until half the slots are free, or until this long
    /// after the last claim began, whichever comes first; zero: never.
    /// A claim of keyed jobs costs the database mostly per key it visits, so fewer, larger
    /// claims cost less per job: with 16 endpoints busy, a quarter to a third less database
    /// time per delivery and as many deliveries a second (docs/performance.md). A queue that
    /// drains claims at once either way.
    public var claimGatherWait: Duration = .milliseconds(50)
    /// The most outcomes one transaction records.
    public var finishBatchSize: Int
    /// Transactions recording outcomes at once, each on its own connection.
    public var outcomeWriters: Int
    /// The transaction that records a keyed job's outcome also claims the next jobs, for the slot
    /// that job held (its key's next job can be claimed only once that outcome is committed).
    /// Off (the default): the slot frees when the handler returns, and the claim loop claims after
    /// the commit. On two cores, where the database's CPU bounds throughput, on saved nothing and
    /// cost more database time per job (docs/performance.md).
    public var claimsWithOutcomes: Bool = false
    /// How often this replica returns other replicas' expired leases to the queue.
    public var reapInterval: Duration
    /// How often one replica (whichever takes the advisory lock first) looks for concurrency keys
    /// that a race left parked with free slots, or with a head later than their first due job,
    /// and mends them (`<schema>.repair_concurrency_keys`). Nil: never.
    public var keyRepairInterval: Duration? = .seconds(30)
    /// The upkeep of the partitioned history (partitions created ahead, dropped past retention);
    /// nil: none (a DBA or another program keeps the partitions).
    public var history: HistoryUpkeepConfiguration? = HistoryUpkeepConfiguration()
    /// Renew leases while handlers run. Off only to simulate a stalled replica in tests.
    public var renewsLeases: Bool
    /// The longest one statement of the worker's own connections may run (`statement_timeout`);
    /// give the handlers' pool the same through ``sessionSettings``.
    public var statementTimeout: Duration
    /// The longest a statement waits for a lock (`lock_timeout`): a table locked elsewhere makes
    /// the attempt fail fast and be released, instead of holding a connection.
    public var lockTimeout: Duration
    /// How long handlers still running at the shutdown timeout, once cancelled, get to have their
    /// jobs released, and outcomes that failed to be written get to be retried.
    public var shutdownGrace: Duration
    /// Releases after database errors that do not count as attempts, per job; past this, a
    /// database error counts as a failed attempt.
    public var maxUncountedReleases: Int
    /// The waits before a job released after a database error runs again (growing, jittered).
    public var releaseBackoff: any RetryStrategy
    /// Commit the worker's own transactions without waiting for the WAL flush
    /// (`synchronous_commit = off`). Faster; a PostgreSQL crash may then forget the last fraction
    /// of a second of outcomes, whose jobs run again (at least once still holds).
    public var asynchronousCommit: Bool
    /// Spans per attempt (JobTracing.swift); off by default.
    public var tracing: JobTracing = .off

    public init(
        conninfo: String?,
        schema: JobQueueSchema,
        applicationName: String = PQConnection.defaultApplicationName,
        workerID: String = JobWorkerConfiguration.defaultWorkerID(),
        concurrency: Int = 128,
        lease: Duration = .seconds(60),
        pollInterval: Duration = .seconds(2),
        shutdownTimeout: Duration = .seconds(30),
        retryStrategy: any RetryStrategy = .standard,
        claimBatchSize: Int = 100,
        finishBatchSize: Int = 500,
        outcomeWriters: Int = 2,
        reapInterval: Duration? = nil,
        renewsLeases: Bool = true,
        statementTimeout: Duration = .seconds(10),
        lockTimeout: Duration = .seconds(2),
        shutdownGrace: Duration = .seconds(3),
        maxUncountedReleases: Int = 10,
        releaseBackoff: any RetryStrategy = .schedule([
            .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(60),
        ]),
        asynchronousCommit: Bool = false,
        listenConninfo: String? = nil,
        preparedStatements: Bool = true
    ) {
        self.conninfo = conninfo
        self.schema = schema
        self.applicationName = applicationName
        self.listenConninfo = listenConninfo
        self.preparedStatements = preparedStatements
        self.workerID = workerID
        self.concurrency = max(1, concurrency)
        self.lease = lease
        self.pollInterval = pollInterval
        self.shutdownTimeout = shutdownTimeout
        self.retryStrategy = retryStrategy
        self.claimBatchSize = max(1, claimBatchSize)
        self.finishBatchSize = max(1, finishBatchSize)
        self.outcomeWriters = max(1, outcomeWriters)
        self.reapInterval = reapInterval ?? min(max(lease / 4, .seconds(1)), .seconds(15))
        self.renewsLeases = renewsLeases
        self.statementTimeout = statementTimeout
        self.lockTimeout = lockTimeout
        self.shutdownGrace = shutdownGrace
        self.maxUncountedReleases = max(0, maxUncountedReleases)
        self.releaseBackoff = releaseBackoff
        self.asynchronousCommit = asynchronousCommit
    }

    /// `SET` statements for a connection that runs handlers' or the worker's statements: the
    /// statement and lock timeouts. Hand them to the handlers' pool as its `sessionSetup`.
    public var sessionSettings: String {
        // jit off: the queue's statements are short, and compiling one costs far more than running it.
        var settings =
            """
            SET statement_timeout = \(Self.milliseconds(statementTimeout)); SET lock_timeout = \
            \(Self.milliseconds(lockTimeout)); SET jit = off
            """
        if asynchronousCommit { settings += "; SET synchronous_commit = off" }
        return settings
    }

    /// The same settings as ``sessionSettings``, for one transaction: one statement of
    /// `set_config(name, value, true)` (SET LOCAL), which ends with its transaction.
    public var transactionSettings: String {
        var settings = [
            ("statement_timeout", "\(Self.milliseconds(statementTimeout))"),
            ("lock_timeout", "\(Self.milliseconds(lockTimeout))"), ("jit", "off"),
        ]
        if asynchronousCommit { settings.append(("synchronous_commit", "off")) }
        return "SELECT " + settings.map { "set_config('\($0.0)', '\($0.1)', true)" }.joined(separator: ", ")
    }

    /// A pool for the worker's or its handlers' statements: prepared statements and settings as
    /// ``preparedStatements`` says (in the session, or at the start of every transaction).
    /// - Parameter applicationName: nil: ``applicationName``.
    public func databasePool(
        maxConnections: Int, applicationName: String? = nil
    )
        -> PQConnectionPool.Configuration
    {
        .init(
            conninfo: conninfo, maxConnections: maxConnections,
            applicationName: applicationName ?? self.applicationName,
            sessionSetup: preparedStatements ? sessionSettings : nil, preparedStatements: preparedStatements,
            transactionSetup: preparedStatements ? nil : transactionSettings)
    }

    private static func milliseconds(_ duration: Duration) -> Int64 { duration.totalMilliseconds }

    /// `host-pid-xxxx`: readable in `locked_by`, unique across restarts.
    public static func defaultWorkerID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "worker"
        let suffix = String(UInt16.random(in: .min ... .max), radix: 16)
        return "\(host)-\(getpid())-\(suffix)"
    }
}
