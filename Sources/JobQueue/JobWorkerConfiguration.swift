import Foundation

/// How a replica works the queue.
public struct JobWorkerConfiguration: Sendable {
    /// A `postgresql://` URI or `key=value` string; nil uses libpq's defaults.
    public var conninfo: String?
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
    /// The schedule for handlers that do not bring their own.
    public var retryPolicy: RetryPolicy
    /// The most jobs one claim statement takes.
    public var claimBatchSize: Int
    /// The most outcomes one transaction records.
    public var finishBatchSize: Int
    /// Transactions recording outcomes at once, each on its own connection.
    public var outcomeWriters: Int
    /// How often this replica returns other replicas' expired leases to the queue.
    public var reapInterval: Duration
    /// Renew leases while handlers run. Off only to simulate a stalled replica in tests.
    public var renewsLeases: Bool

    public init(
        conninfo: String?,
        workerID: String = JobWorkerConfiguration.defaultWorkerID(),
        concurrency: Int = 32,
        lease: Duration = .seconds(60),
        pollInterval: Duration = .seconds(2),
        shutdownTimeout: Duration = .seconds(30),
        retryPolicy: RetryPolicy = .standard,
        claimBatchSize: Int = 100,
        finishBatchSize: Int = 500,
        outcomeWriters: Int = 2,
        reapInterval: Duration? = nil,
        renewsLeases: Bool = true
    ) {
        self.conninfo = conninfo
        self.workerID = workerID
        self.concurrency = max(1, concurrency)
        self.lease = lease
        self.pollInterval = pollInterval
        self.shutdownTimeout = shutdownTimeout
        self.retryPolicy = retryPolicy
        self.claimBatchSize = max(1, claimBatchSize)
        self.finishBatchSize = max(1, finishBatchSize)
        self.outcomeWriters = max(1, outcomeWriters)
        self.reapInterval = reapInterval ?? min(max(lease / 4, .seconds(1)), .seconds(15))
        self.renewsLeases = renewsLeases
    }

    /// `host-pid-xxxx`: readable in `locked_by`, unique across restarts.
    public static func defaultWorkerID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "worker"
        let suffix = String(UInt16.random(in: .min ... .max), radix: 16)
        return "\(host)-\(getpid())-\(suffix)"
    }
}
