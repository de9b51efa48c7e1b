import CLibPQ
import Dispatch
import Foundation
import Logging
import Synchronization

/// One libpq connection.
///
/// The module's public types carry libpq's `PQ` prefix (`PQConnection`, `PQQuery`, `PQRow`, ...):
/// they are thin Swift over libpq, and their behaviour differs from the `Postgres*` types of
/// postgres-nio (blocking calls on a queue of their own, libpq's text formats, no NIO), so they
/// do not borrow those names.
///
/// libpq calls block, and a `PGconn` may be used by one thread at a time. Every call therefore
/// runs on the connection's own serial dispatch queue: a thread outside Swift's cooperative pool,
/// so a slow statement never starves other tasks. The caller's task suspends until the call ends.
///
/// Calls honour task cancellation: a statement that is running is cancelled on the server
/// (`PQcancel`, the same request psql sends on Ctrl-C), and if the server cannot be reached to
/// hear it, the caller gets `CancellationError` after ``cancellationGrace`` anyway; the connection
/// is then marked unusable and closes once libpq returns. A timeout built from a task group
/// therefore holds even while libpq is blocked.
///
/// A connection is used by one task at a time (take it from ``PQConnectionPool`` or own
/// it); statements from two tasks would interleave inside each other's transactions.
///
/// Behind a transaction pooler (PgBouncer's `pool_mode = transaction`) a connection's session
/// does not survive its transaction: connect with `preparedStatements: false` (unnamed
/// statements only) and put settings in `transactionSetup` rather than `sessionSettings`.
///
/// `@unchecked Sendable`: the only mutable state (`handle`, `prepared`) is read and written on
/// `queue` alone; `broken` is atomic, and the cancel handle has a lock of its own.
public final class PQConnection: @unchecked Sendable {
    private let queue: DispatchQueue
    var handle: OpaquePointer?
    var prepared: [String: String] = [:]
    /// Owned by this object alone and released once, in `deinit`, after `PQfinish`.
    private let notices: Unmanaged<NoticeSink>
    private let canceller: Canceller
    /// Set when a call was abandoned while libpq still ran it: never reuse the connection.
    private let broken = Atomic<Bool>(false)
    public let logger: Logger
    /// `host:port` of the server, for messages (never the password).
    public let endpoint: String
    /// False: every statement is sent unnamed (`PQexecParams`, `PQsendQueryParams`), never
    /// prepared by name, because a transaction pooler before PgBouncer 1.21 hands the next
    /// statement to a server connection that never saw the PREPARE.
    public let preparedStatements: Bool
    /// One statement (no parameters) that runs first in every transaction this connection opens:
    /// after `BEGIN` in ``transaction(_:)``, and before a statement or pipeline sent outside a
    /// transaction, in the same round trip (the pipeline's implicit transaction). Settings made
    /// here with `set_config(name, value, true)` (SET LOCAL) hold for that transaction alone, so
    /// they never reach other clients of a pooler's server connection.
    public let transactionSetup: String?

    /// How long a cancelled call waits for the server to acknowledge the cancel before the caller
    /// is released anyway.
    public static let cancellationGrace: Duration = .seconds(2)

    /// The session settings every connection gets: timestamps are read and written in UTC and
    /// ISO form (``PQValue`` relies on them). Only parameters that PgBouncer tracks per
    /// client (`TimeZone` and `DateStyle`, with `client_encoding`, `standard_conforming_strings`
    /// and `application_name`): in transaction pooling it restores each client's own values on
    /// every server connection it lends, so they are correct behind it and do not reach its other
    /// clients. (`IntervalStyle` is not tracked by 1.18: nothing here reads an interval as text;
    /// statements turn intervals into seconds themselves.)
    static let baseSessionSettings = "SET TIME ZONE 'UTC'; SET DateStyle = 'ISO'"

    private init(
        handle: OpaquePointer, queue: DispatchQueue, logger: Logger, preparedStatements: Bool, transactionSetup: String?
    ) {
        self.handle = handle
        self.queue = queue
        self.preparedStatements = preparedStatements
        self.transactionSetup = transactionSetup
        self.notices = Unmanaged.passRetained(NoticeSink(logger: logger))
        self.canceller = Canceller(PQgetCancel(handle))
        self.logger = logger
        self.endpoint = Self.endpoint(of: handle)
        PQsetNoticeReceiver(handle, noticeReceiver, notices.toOpaque())
    }

    deinit {
        canceller.free()
        // `PQfinish` writes to the socket: on the connection's queue, never on the thread that
        // dropped the last reference (often a cooperative one). No call can be running there: each
        // holds a reference to this object. The notice sink goes after, as libpq may still use it.
        let handle = handle.map(Handle.init)
        let notices = notices
        queue.async {
            if let handle { PQfinish(handle.pointer) }
            notices.release()
        }
    }

    /// Opens a connection.
    ///
    /// - Parameters:
    ///   - conninfo: a `postgresql://` URI or `key=value` string; nil or empty uses libpq's
    ///     defaults and `PG*` environment variables.
    ///   - sessionSettings: `SET ...` statements run once the connection is open (fixed text,
    ///     never built from values), e.g. timeouts. Session state: not behind a transaction pooler.
    ///   - preparedStatements: false sends every statement unnamed (transaction poolers).
    ///   - transactionSetup: see ``transactionSetup``.
    /// The `application_name` a connection reports when the caller names none (nor the conninfo,
    /// nor `PGAPPNAME`): the program's own name, as `pg_stat_activity` should show it.
    public static let defaultApplicationName = ProcessInfo.processInfo.processName

    public static func connect(
        _ conninfo: String?, applicationName: String = PQConnection.defaultApplicationName,
        sessionSettings: String? = nil,
        preparedStatements: Bool = true, transactionSetup: String? = nil,
        connectTimeout: Duration = .seconds(10), logger: Logger
    ) async throws -> PQConnection {
        let queue = DispatchQueue(label: "libpq.connection")
        let handle = try await BlockingCall<Handle>.run(
            on: queue, whenCancelledWhileRunning: {}, orphan: { PQfinish($0.pointer) }
        ) { isCancelled in
            Handle(
                pointer: try openHandle(
                    conninfo, applicationName: applicationName, timeout: connectTimeout, isCancelled: isCancelled))
        }
        // From here on the connection object owns the handle and the notice sink: a failure
        // closes it once, through `deinit`.
        let connection = PQConnection(
            handle: handle.pointer, queue: queue, logger: logger, preparedStatements: preparedStatements,
            transactionSetup: transactionSetup)
        let settings = [baseSessionSettings, sessionSettings].compactMap { $0 }.joined(separator: "; ")
        try await connection.execute(script: settings, name: "sessionSettings")
        return connection
    }

    /// True when the connection can go back to a pool: open, idle (no transaction left open, not
    /// in pipeline mode, no call abandoned on it), and its backend still there. An idle connection
    /// whose backend was terminated or whose server restarted has data waiting (the server's
    /// goodbye, then end of file); reading it here, without blocking, finds that out before a
    /// statement fails on it.
    ///
    /// Synchronous on purpose, and never blocking: ask it only of a connection no task is using
    /// (the pool does, between leases). Then its queue is idle, unless a cancelled call was
    /// abandoned on it, and such a connection is marked `broken` before its caller is released,
    /// so this returns false without touching the queue. Two asynchronous hops per lease cost
    /// the claim loop a quarter of its throughput under load (measured: 9,800 vs 7,200 jobs/s).
    public var isReusable: Bool {
        if broken.load(ordering: .acquiring) { return false }
        return queue.sync {
            guard let handle, PQstatus(handle) == CONNECTION_OK,
                PQtransactionStatus(handle) == PQTRANS_IDLE, PQpipelineStatus(handle) == PQ_PIPELINE_OFF
            else { return false }
            var descriptor = pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0)
            if poll(&descriptor, 1, 0) > 0 {
                if PQconsumeInput(handle) == 0 { return false }
                while let notify = PQnotifies(handle) { PQfreemem(notify) }
            }
            return PQstatus(handle) == CONNECTION_OK
        }
    }

    /// How long ``close()`` waits for the connection's queue to close the handle.
    public static let closeGrace: Duration = .seconds(1)

    /// Closes the connection. Further calls fail with `connectionLost`.
    ///
    /// `PQfinish` runs on the connection's queue, after the call running there (if any). The
    /// caller waits for it at most ``closeGrace``, and not at all when a cancelled call was
    /// abandoned on the connection: such a call may block until TCP gives up on a partitioned
    /// server (`tcp_user_timeout`, 30 s; for good behind a proxy that accepts and never answers),
    /// and a shutdown must not wait for it. The handle is closed when the call returns.
    public func close() async {
        let closed = finishOnQueue()
        if broken.load(ordering: .acquiring) { return }
        await closed.wait(atMost: Self.closeGrace)
    }

    /// Closes the connection once the call running on it (if any) returns, without waiting.
    public func closeWhenIdle() {
        finishOnQueue()
    }

    /// Frees the cancel handle now (never blocks) and queues `PQfinish`; signals once it ran.
    @discardableResult
    private func finishOnQueue() -> BoundedSignal {
        canceller.free()
        let closed = BoundedSignal()
        queue.async {
            if let handle = self.handle { PQfinish(handle) }
            self.handle = nil
            closed.signal()
        }
        return closed
    }

    /// Runs a statement with parameters bound separately from its text and returns its rows.
    @discardableResult
    public func query(_ query: PQQuery, _ bindings: [any PQEncodable] = []) async throws -> PQResult {
        let texts = bindings.map(\.postgresText)
        return try await onQueue(query.name) { _ in try self.runParams(query, texts) }
    }

    /// Sends every statement before reading any result (libpq's pipeline mode), so they cost one
    /// round trip together instead of one each. Without an explicit `BEGIN` among them they run
    /// as one implicit transaction. After a statement fails, the ones after it do not run: their
    /// results are failures saying so.
    public func pipeline(_ statements: [PQStatement]) async throws -> [Result<PQResult, PQError>] {
        let prepared = statements.map { ($0.query, $0.bindings.map(\.postgresText)) }
        return try await onQueue("pipeline") { _ in
            guard let setup = try self.setupOutsideTransaction("pipeline") else {
                return try self.runPipeline(prepared)
            }
            let results = try self.runPipeline([(setup, [])] + prepared)
            if case .failure(let error) = results[0] { throw error }
            return Array(results.dropFirst())
        }
    }

    /// Runs fixed SQL text that may hold several statements and takes no parameters: for
    /// migrations and session commands. Never build this text from values.
    public func execute(script sql: String, name: String) async throws {
        try await onQueue(name) { _ in _ = try self.runSimple(sql, name: name) }
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    ///
    /// Inside a transaction already (a caller's), `body` runs under a savepoint instead: its work
    /// commits with the caller's transaction, and when it throws only its own work is undone, so
    /// the caller's transaction stays usable. (A second `BEGIN` would be ignored and the inner
    /// `COMMIT` would commit the caller's work early.)
    public func transaction<T: Sendable>(
        _ body: (PQConnection) async throws -> T
    ) async throws -> T {
        if try await onQueue("transactionStatus", { _ in try self.isInTransaction("transactionStatus") }) {
            return try await savepoint(body)
        }
        try await execute(script: transactionSetup.map { "BEGIN; \($0)" } ?? "BEGIN", name: "begin")
        let value: T
        do {
            value = try await body(self)
        } catch {
            try? await execute(script: "ROLLBACK", name: "rollback")
            throw error
        }
        try await execute(script: "COMMIT", name: "commit")
        return value
    }

    /// `body` under a savepoint of the transaction in progress. One name serves every depth:
    /// `RELEASE` and `ROLLBACK TO` act on the latest savepoint of that name, the innermost.
    private func savepoint<T: Sendable>(_ body: (PQConnection) async throws -> T) async throws -> T {
        try await execute(script: "SAVEPOINT libpq_nested", name: "savepoint")
        let value: T
        do {
            value = try await body(self)
        } catch {
            try? await execute(
                script: "ROLLBACK TO SAVEPOINT libpq_nested; RELEASE SAVEPOINT libpq_nested",
                name: "rollbackToSavepoint")
            throw error
        }
        try await execute(script: "RELEASE SAVEPOINT libpq_nested", name: "releaseSavepoint")
        return value
    }

    /// Runs `work` on the connection's queue; cancelling the task cancels the statement.
    private func onQueue<T: Sendable>(
        _ name: String, _ work: @escaping @Sendable (_ isCancelled: () -> Bool) throws -> T
    ) async throws -> T {
        if broken.load(ordering: .acquiring) {
            throw PQError(
                code: .connectionLost, message: "the connection was abandoned by a cancelled call", statement: name)
        }
        return try await BlockingCall<T>.run(
            on: queue,
            whenCancelledWhileRunning: { [canceller] in canceller.send() },
            whenAbandoned: { self.broken.store(true, ordering: .releasing) },
            orphan: { _ in },
            work)
    }
}
