import Logging

/// Runs `body`, then `teardown`, whether `body` returned or threw: the shape of every scoped
/// `with...` helper here (a pool, a listener), since `defer` cannot await.
public func withTeardown<T>(_ body: () async throws -> T, teardown: () async -> Void) async rethrows -> T {
    let value: T
    do {
        value = try await body()
    } catch {
        await teardown()
        throw error
    }
    await teardown()
    return value
}

extension PQConnection {
    /// Opens a connection, runs `body` on it, and closes it however `body` ends: for work that
    /// needs one connection for a while (an operator command, a script), where a pool is too much.
    public static func withConnection<T>(
        _ conninfo: String?, applicationName: String = PQConnection.defaultApplicationName,
        sessionSettings: String? = nil,
        logger: Logger, _ body: (PQConnection) async throws -> T
    ) async throws -> T {
        let connection = try await connect(
            conninfo, applicationName: applicationName, sessionSettings: sessionSettings, logger: logger)
        return try await withTeardown {
            try await body(connection)
        } teardown: {
            await connection.close()
        }
    }
}
