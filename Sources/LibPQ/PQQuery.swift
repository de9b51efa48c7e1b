/// A statement with a name.
///
/// The name labels errors and logs (`claimJobs failed: ...`) and is the name under which the
/// statement is prepared on each connection, so it is parsed and planned once per connection.
/// Keep the text constant: values travel as parameters (`$1`, `$2`, ...), never inside it.
/// An empty name marks a one-off statement, sent without being prepared.
public struct PQQuery: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    public let sql: String

    public init(_ name: String, _ sql: String) {
        self.name = name
        self.sql = sql
    }

    public var description: String { name }

    /// Equal queries have equal names and texts. Hashing the name and the text's length, not the
    /// text, keeps hashing a query cheap where rows are grouped by it (a few hundred bytes of SQL
    /// hashed for every row of a batch).
    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(sql.utf8.count)
    }
}

/// A statement with its parameters, ready to run.
public struct PQStatement: Sendable {
    public let query: PQQuery
    public let bindings: [any PQEncodable]

    public init(_ query: PQQuery, _ bindings: [any PQEncodable] = []) {
        self.query = query
        self.bindings = bindings
    }
}
