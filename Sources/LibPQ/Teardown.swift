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
