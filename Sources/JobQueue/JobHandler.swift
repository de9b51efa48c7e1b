import Logging
import LibPQ

/// Works jobs of one kind.
///
/// A program with a kind of its own creates the queue's schema once (``JobQueueSchema`` names it,
/// with the channel its inserts notify and the prefix of its metrics), enqueues the kind with
/// ``JobEnqueuer`` and runs a ``JobWorker`` with a handler for it:
///
/// ```swift
/// struct WelcomeEmail: Codable { var userID: String }
///
/// struct WelcomeEmailHandler: JobHandler {
///     let kind = "email.welcome"
///     var retryStrategy: (any RetryStrategy)? { ExponentialJitterRetryStrategy(
///         maxAttempts: 5, initialDelay: .seconds(10), maxDelay: .seconds(600)) }
///
///     func handle(_ job: Job, context: JobContext) async throws -> JobOutcome {
///         guard let email = try? JSONDecoder().decode(WelcomeEmail.self, from: Data(job.payload.bytes)) else {
///             return .fail("the email.welcome payload is not {\"userID\": ...}")
///         }
///         try await send(to: email.userID)  // a thrown error is a failed attempt, retried
///         return .complete
///     }
/// }
///
/// // Schema `accounts_queue`, channel `accounts_queue_jobs`, metrics `accounts_queue_*`.
/// let queue = try JobQueueSchema(name: "accounts_queue")
/// try await PQConnection.withConnection(url, logger: logger) { connection in
///     try await queue.migrate(connection, logger: logger)  // creates or updates the schema
///     try await JobEnqueuer(connection, schema: queue).enqueue(
///         NewJob(kind: "email.welcome", encoding: WelcomeEmail(userID: "u1")))
/// }
/// let worker = JobWorker(
///     configuration: JobWorkerConfiguration(conninfo: url, schema: queue), handlers: [WelcomeEmailHandler()],
///     database: pool, logger: logger)
/// try await ServiceGroup(services: [worker], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
///
/// A thrown error is a failed attempt, retried as its ``retryStrategy`` says with the error's text
/// recorded; it never stops the worker. Return ``JobOutcome/fail(_:statements:)`` for failures
/// that retrying cannot fix.
public protocol JobHandler: Sendable {
    /// The `kind` column value this handler claims.
    var kind: String { get }
    /// How failed attempts are retried; nil uses the worker's.
    var retryStrategy: (any RetryStrategy)? { get }
    /// The most jobs of this kind sharing one `concurrency_key` that may run at once, across all
    /// replicas; nil for no limit. Jobs without a key are never limited. The worker reads it once,
    /// when it is made.
    var concurrencyLimit: Int? { get }
    func handle(_ job: Job, context: JobContext) async throws -> JobOutcome
}

extension JobHandler {
    public var retryStrategy: (any RetryStrategy)? { nil }
    public var concurrencyLimit: Int? { nil }
}

/// What a handler may use while it works.
public struct JobContext: Sendable {
    /// A logger carrying `job.id`, `job.kind` and `job.attempt`.
    public var logger: Logger
    /// Connections shared by the replica's handlers; hold one only as long as a statement needs.
    public var database: PQConnectionPool
    public var workerID: String
    /// Spans for the handler's statements and requests: children of the attempt's span (which
    /// is the task's current span). Off unless the worker traces.
    public var tracing: JobTracing

    public init(logger: Logger, database: PQConnectionPool, workerID: String, tracing: JobTracing = .off) {
        self.logger = logger
        self.database = database
        self.workerID = workerID
        self.tracing = tracing
    }
}

/// The built-in `noop` kind: does nothing, for health checks and for measuring the queue.
public struct NoopHandler: JobHandler {
    public let kind = "noop"
    public init() {}
    public func handle(_ job: Job, context: JobContext) async throws -> JobOutcome { .complete }
}
