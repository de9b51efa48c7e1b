import LibPQ
import Logging
import ServiceLifecycle
import WebhookDelivery

/// Runs ``IntegrationCatchUp`` in the replica's service group until shutdown begins: a sweep
/// cut short rolls back, and the next replica's sweep does its work.
struct IntegrationCatchUpService: Service {
    let catchUp: IntegrationCatchUp
    let database: PQConnectionPool
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await catchUp.run(database: database, logger: logger)
        }
    }
}
