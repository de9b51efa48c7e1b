import Logging
import Synchronization

/// A bounded set of connections shared by many tasks, each task holding one at a time.
///
/// Connections open lazily up to `maxConnections`; a task that finds none free waits its turn.
/// A connection comes back only if it is reusable (open, idle, outside any transaction and out of
/// pipeline mode); any other is closed, and the next lease opens a new one, so the pool recovers
/// by itself after the server restarts, terminates backends or a statement is cancelled.
///
/// Prefer ``withPool(configuration:logger:_:)``, which closes the pool when its body ends.
///
/// The waiters are a hand-written list of continuations, like postgres-nio's pool: the pool must
/// wake exactly one waiter per freed slot, in arrival order, and remove one particular waiter
/// when its task is cancelled; an `AsyncStream` can do neither.
public final class PQConnectionPool: Sendable {
    public struct Configuration: Sendable {
        /// A `postgresql://` URI or `key=value` string; nil uses libpq's defaults.
        public var conninfo: String?
        public var maxConnections: Int
        public var applicationName: String
        /// Fixed session settings run on every new connection (`SET ...`), or nil. Session state:
        /// not for a connection through a transaction pooler (use `transactionSetup`).
        public var sessionSetup: String?
        /// False: statements are sent unnamed, never prepared (a transaction pooler such as
        /// PgBouncer before 1.21). See ``PQConnection/preparedStatements``.
        public var preparedStatements: Bool
        /// One statement run first in every transaction, e.g. `SELECT set_config(..., true)`.
        /// See ``PQConnection/transactionSetup``.
        public var transactionSetup: String?
        /// How long opening one connection may take.
        public var connectTimeout: Duration

        public init(
            conninfo: String?, maxConnections: Int = 8,
            applicationName: String = PQConnection.defaultApplicationName,
            sessionSetup: String? = nil,
            connectTimeout: Duration = .seconds(10), preparedStatements: Bool = true, transactionSetup: String? = nil
        ) {
            self.preparedStatements = preparedStatements
            self.transactionSetup = transactionSetup
            self.conninfo = conninfo
            self.maxConnections = max(1, maxConnections)
            self.applicationName = applicationName
            self.sessionSetup = sessionSetup
            self.connectTimeout = connectTimeout
        }
    }

    private struct State {
        var idle: [PQConnection] = []
        var open = 0
        var waiters: [(id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextWaiterID = 0
        var closed = false
    }

    public let configuration: Configuration
    private let logger: Logger
    private let state = Mutex(State())

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs `body` with a new pool and closes the pool when `body` ends, however it ends.
    public static func withPool<T>(
        configuration: Configuration, logger: Logger, _ body: (PQConnectionPool) async throws -> T
    ) async rethrows -> T {
        let pool = PQConnectionPool(configuration: configuration, logger: logger)
        return try await withTeardown {
            try await body(pool)
        } teardown: {
            await pool.close()
        }
    }

    /// Lends `body` a connection for its duration.
    public func withConnection<T: Sendable>(_ body: (PQConnection) async throws -> T) async throws -> T {
        let connection = try await lease()
        do {
            let value = try await body(connection)
            await give(back: connection)
            return value
        } catch {
            await give(back: connection)
            throw error
        }
    }

    /// Runs `body` in a transaction on a pooled connection.
    public func transaction<T: Sendable>(_ body: (PQConnection) async throws -> T) async throws -> T {
        try await withConnection { connection in try await connection.transaction(body) }
    }

    /// Runs one statement on a pooled connection.
    @discardableResult
    public func query(_ query: PQQuery, _ bindings: [any PQEncodable] = []) async throws -> PQResult {
        try await withConnection { connection in try await connection.query(query, bindings) }
    }

    /// How many tasks wait for a connection now: for tests and diagnostics.
    public var waitingCount: Int { state.withLock { $0.waiters.count } }

    /// How many connections are lent out (or being opened for a lease) now: for tests and diagnostics.
    public var leasedCount: Int { state.withLock { $0.open - $0.idle.count } }

    /// Closes idle connections and refuses further leases; leased ones close when returned.
    public func close() async {
        let (idle, waiters) = state.withLock { state in
            state.closed = true
            defer {
                state.idle = []
                state.waiters = []
            }
            return (state.idle, state.waiters)
        }
        for waiter in waiters { waiter.continuation.resume(throwing: CancellationError()) }
        for connection in idle { await connection.close() }
    }

    private enum Step {
        case use(PQConnection)
        case open
        case wait
    }

    private func lease() async throws -> PQConnection {
        while true {
            try Task.checkCancellation()
            let step: Step = state.withLock { state in
                if state.closed { return .wait }
                if let connection = state.idle.popLast() { return .use(connection) }
                if state.open < configuration.maxConnections {
                    state.open += 1
                    return .open
                }
                return .wait
            }
            switch step {
            case .use(let connection):
                if connection.isReusable { return connection }
                await discard(connection)
            case .open:
                do {
                    return try await PQConnection.connect(
                        configuration.conninfo, applicationName: configuration.applicationName,
                        sessionSettings: configuration.sessionSetup,
                        preparedStatements: configuration.preparedStatements,
                        transactionSetup: configuration.transactionSetup, connectTimeout: configuration.connectTimeout,
                        logger: logger)
                } catch {
                    state.withLock { $0.open -= 1 }
                    wakeOne()
                    throw error
                }
            case .wait:
                if state.withLock({ $0.closed }) {
                    throw PQError(code: .client, message: "the connection pool is closed")
                }
                try await waitForConnection()
                // Woken for a freed connection but cancelled before running again: the wake-up
                // goes to the next waiter, or the connection would sit idle while it waits.
                if Task.isCancelled {
                    wakeOne()
                    throw CancellationError()
                }
            }
        }
    }

    private func waitForConnection() async throws {
        let id = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow = state.withLock { state -> Result<Void, any Error>? in
                    // Cancelled before the waiter was listed: `onCancel` ran already, found
                    // nothing to remove, and would never end this wait. Checked under the lock
                    // `onCancel` takes, so one of the two always sees the other.
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if state.closed || !state.idle.isEmpty || state.open < configuration.maxConnections {
                        return .success(())
                    }
                    state.waiters.append((id, continuation))
                    return nil
                }
                if let resumeNow { continuation.resume(with: resumeNow) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0) }
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    private func give(back connection: PQConnection) async {
        guard connection.isReusable else {
            await discard(connection)
            return
        }
        let keep = state.withLock { state -> Bool in
            if state.closed {
                state.open -= 1
                return false
            }
            state.idle.append(connection)
            return true
        }
        if keep {
            wakeOne()
        } else {
            await connection.close()
        }
    }

    private func discard(_ connection: PQConnection) async {
        state.withLock { $0.open -= 1 }
        logger.debug(
            "dropping a database connection that is broken or not idle",
            metadata: ["db.endpoint": "\(connection.endpoint)"])
        wakeOne()
        // Not awaited: an abandoned call may still hold the connection's queue.
        connection.closeWhenIdle()
    }

    private func wakeOne() {
        let waiter = state.withLock { state in state.waiters.isEmpty ? nil : state.waiters.removeFirst() }
        waiter?.continuation.resume()
    }
}
