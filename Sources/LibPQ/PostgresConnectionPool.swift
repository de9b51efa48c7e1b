import Logging
import Synchronization

/// A bounded set of connections shared by many tasks, each task holding one at a time.
///
/// Connections open lazily up to `maxConnections`; a task that finds none free waits its turn.
/// A connection that broke is dropped when returned, and the next lease opens a new one, so the
/// pool recovers by itself after the server restarts or terminates backends.
public final class PostgresConnectionPool: Sendable {
    public struct Configuration: Sendable {
        /// A `postgresql://` URI or `key=value` string; nil uses libpq's defaults.
        public var conninfo: String?
        public var maxConnections: Int
        public var applicationName: String
        /// Fixed session settings run on every new connection (`SET ...`), or nil.
        public var sessionSetup: String?

        public init(
            conninfo: String?, maxConnections: Int = 8, applicationName: String = "webhook-worker", sessionSetup: String? = nil
        ) {
            self.conninfo = conninfo
            self.maxConnections = max(1, maxConnections)
            self.applicationName = applicationName
            self.sessionSetup = sessionSetup
        }
    }

    private struct State {
        var idle: [PostgresConnection] = []
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

    /// Lends `body` a connection for its duration.
    public func withConnection<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        let connection = try await lease()
        do {
            let value = try await body(connection)
            give(back: connection)
            return value
        } catch {
            give(back: connection)
            throw error
        }
    }

    /// Runs `body` in a transaction on a pooled connection.
    public func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await withConnection { connection in try await connection.transaction(body) }
    }

    /// Runs one statement on a pooled connection.
    @discardableResult
    public func query(_ query: PostgresQuery, _ bindings: [any PostgresEncodable] = []) async throws -> PostgresResult {
        try await withConnection { connection in try await connection.query(query, bindings) }
    }

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
        case use(PostgresConnection)
        case open
        case wait
    }

    private func lease() async throws -> PostgresConnection {
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
                if connection.isHealthy { return connection }
                discard(connection)
            case .open:
                do {
                    let connection = try await PostgresConnection.connect(
                        configuration.conninfo, applicationName: configuration.applicationName, logger: logger)
                    if let setup = configuration.sessionSetup {
                        try await connection.execute(script: setup, name: "sessionSetup")
                    }
                    return connection
                } catch {
                    state.withLock { $0.open -= 1 }
                    wakeOne()
                    throw error
                }
            case .wait:
                if state.withLock({ $0.closed }) {
                    throw PostgresError(code: .client, message: "the connection pool is closed")
                }
                try await waitForConnection()
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
                let resumeNow = state.withLock { state -> Bool in
                    if state.closed || !state.idle.isEmpty || state.open < configuration.maxConnections {
                        return true
                    }
                    state.waiters.append((id, continuation))
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0) }
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    private func give(back connection: PostgresConnection) {
        guard connection.isHealthy else {
            discard(connection)
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
            Task { await connection.close() }
        }
    }

    private func discard(_ connection: PostgresConnection) {
        state.withLock { $0.open -= 1 }
        logger.debug("dropping a broken database connection", metadata: ["db.endpoint": "\(connection.endpoint)"])
        Task { await connection.close() }
        wakeOne()
    }

    private func wakeOne() {
        let waiter = state.withLock { state in state.waiters.isEmpty ? nil : state.waiters.removeFirst() }
        waiter?.continuation.resume()
    }
}
