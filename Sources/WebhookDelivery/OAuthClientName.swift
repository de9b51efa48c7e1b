import LibPQ

/// How an operator names an OAuth client, in every command that takes one: its id
/// (`"OAuthClient".id`, what the worker's tables record), its public `clientId` (what the web
/// app and the client's owner see), or its endpoint key (`client:<id>`, as `endpoints list`
/// prints it). One resolver, so that no command accepts fewer forms than another.
public struct OAuthClientName: Sendable {
    public let connection: PQConnection

    public init(_ connection: PQConnection) {
        self.connection = connection
    }

    // An id wins over a public clientId that happens to be the same text.
    static let resolve = PQQuery(
        "resolveOAuthClient",
        #"SELECT id FROM "OAuthClient" WHERE id = $1 OR "clientId" = $1 ORDER BY id = $1 DESC LIMIT 1"#)

    /// The `"OAuthClient".id` that `text` names. Text that names no client is taken as an id, so
    /// the history of a client the web app has deleted can still be found by its id.
    public func id(for text: String) async throws -> String {
        try await existingID(for: text) ?? Self.withoutKeyPrefix(text)
    }

    /// The `"OAuthClient".id` that `text` names, or nil when no client in `"OAuthClient"` has it.
    public func existingID(for text: String) async throws -> String? {
        try await connection.query(Self.resolve, [Self.withoutKeyPrefix(text)]).first?.decode("id")
    }

    static func withoutKeyPrefix(_ text: String) -> String {
        let prefix = EndpointCircuit.keyPrefix
        return text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : text
    }

    /// The same for an optional filter: nil stays nil (no filter).
    public func id(for text: String?) async throws -> String? {
        guard let text else { return nil }
        let id: String = try await id(for: text)
        return id
    }
}
