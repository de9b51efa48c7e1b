import Foundation
import LibPQ

/// Sessions signed out before their expiry (`webhook_worker.console_sign_outs`, the deliveries' migration 007).
///
/// A session cookie is signed, not stored: it works on every replica with the same token and
/// after a restart, so a list in one process's memory would not end it. The list is in the
/// database, read once per request that carries a cookie. The console's only SQL of its own:
/// the table is the console's alone, like its cookies.
struct ConsoleSignOuts: Sendable {
    let connection: PQConnection

    init(_ connection: PQConnection) {
        self.connection = connection
    }

    static let record = PQQuery(
        "consoleSignOut",
        """
        WITH expired AS (DELETE FROM webhook_worker.console_sign_outs WHERE expires_at < now())
        INSERT INTO webhook_worker.console_sign_outs (nonce, actor, expires_at)
        VALUES ($1, $2, now() + make_interval(secs => $3)) ON CONFLICT (nonce) DO NOTHING
        """)

    /// Ends the session of `nonce` on every console, until `lifetime` from now (no session
    /// outlives it); forgets the sessions that have expired since.
    func record(nonce: String, actor: String, lifetime: TimeInterval = ConsoleSessions.lifetime) async throws {
        try await connection.query(Self.record, [nonce, actor, Int(lifetime)])
    }

    static let isSignedOut = PQQuery(
        "consoleIsSignedOut", "SELECT 1 AS one FROM webhook_worker.console_sign_outs WHERE nonce = $1")

    /// Whether the session of `nonce` was signed out.
    func isSignedOut(nonce: String) async throws -> Bool {
        !(try await connection.query(Self.isSignedOut, [nonce]).isEmpty)
    }
}
