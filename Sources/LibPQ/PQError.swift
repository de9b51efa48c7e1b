/// An error from PostgreSQL or from libpq.
///
/// It carries what a reader needs to act on it: the SQLSTATE, the server's message and hint, and
/// the name of the statement that failed. It never carries parameter values, row values (the
/// server's DETAIL is not kept) or the connection's password, so it is safe to log and store.
public struct PQError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is. New codes can be added without breaking callers.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case connectionFailed = "connection failed"
            case connectionLost = "connection lost"
            case server = "server error"
            case client = "client error"
            case decoding = "decoding error"
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The connection could not be established.
        public static let connectionFailed = Code(.connectionFailed)
        /// The connection broke while in use; the statement may or may not have run.
        public static let connectionLost = Code(.connectionLost)
        /// The server rejected the statement; `sqlState` says why.
        public static let server = Code(.server)
        /// libpq refused the request before it reached the server.
        public static let client = Code(.client)
        /// A result value could not be read as the requested type.
        public static let decoding = Code(.decoding)

        public var description: String { base.rawValue }
    }

    public var code: Code
    /// The five-character SQLSTATE, when the server sent one (e.g. `23505`).
    public var sqlState: String?
    public var message: String
    public var detail: String?
    public var hint: String?
    /// The name the caller gave the statement (e.g. `claimJobs`), never its parameters.
    public var statement: String?

    public init(
        code: Code, message: String, sqlState: String? = nil, detail: String? = nil,
        hint: String? = nil, statement: String? = nil
    ) {
        self.code = code
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
        self.statement = statement
    }

    public var description: String {
        var text = "PostgreSQL \(code)"
        if let statement { text += " in \(statement)" }
        if let sqlState { text += " [\(sqlState)]" }
        text += ": \(message)"
        // `detail` stays out: the server's DETAIL quotes row values ("Failing row contains ...").
        if let hint, !hint.isEmpty { text += " (hint: \(hint))" }
        return text
    }

    /// True when retrying later may succeed: the connection broke, the server is shutting down
    /// or refusing connections for now, or the statement gave up waiting (a lock held elsewhere,
    /// `statement_timeout`, a cancel).
    public var isTransient: Bool {
        if code == .connectionLost || code == .connectionFailed { return true }
        guard let sqlState else { return false }
        // 08: connection exception, 57P: operator intervention (shutdown, terminate), 57014:
        // query cancelled (statement_timeout or a cancel request), 55P03: lock not available
        // (lock_timeout), 40001/40P01: serialization failure and deadlock, 53300: too many
        // connections.
        return sqlState.hasPrefix("08") || sqlState.hasPrefix("57P") || sqlState == "57014" || sqlState == "55P03"
            || sqlState == "40001" || sqlState == "40P01" || sqlState == "53300"
    }

    /// SQLSTATE 57014 (`statement_timeout`, or a cancel request) or 55P03 (`lock_timeout`).
    public var isTimeout: Bool { sqlState == "57014" || sqlState == "55P03" }

    /// SQLSTATE 23505.
    public var isUniqueViolation: Bool { sqlState == "23505" }
}
