import Foundation
import LibPQ

/// Previous webhook secrets that keep signing beside the current one for an overlap, so that
/// receivers can rotate without missing a delivery.
public struct RetiredSecrets: Sendable {
    public let connection: PQConnection

    public init(_ connection: PQConnection) {
        self.connection = connection
    }

    static let retire = PQQuery(
        "retireSecret", "INSERT INTO webhook_worker.retired_secrets (oauth_client_id, secret) VALUES ($1, $2)")

    /// Records `secret` as OAuth client `client`'s previous secret, from now.
    public func retire(_ secret: String, client: String) async throws {
        try await connection.query(Self.retire, [client, secret])
    }

    static let prune = PQQuery(
        "pruneRetiredSecrets", "DELETE FROM webhook_worker.retired_secrets WHERE retired_at < now() - $1::interval")

    /// Deletes secrets retired longer than `overlap` ago.
    /// - Returns: the secrets deleted.
    public func prune(olderThan overlap: Duration) async throws -> Int {
        try await connection.query(Self.prune, [PQInterval(overlap)]).affectedRows
    }
}
