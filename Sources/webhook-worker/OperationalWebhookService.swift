import LibPQ
import Logging
import ServiceLifecycle
import WebhookDelivery

/// Runs the ``OperationalWebhooks`` relay in the replica's service group until shutdown begins:
/// a POST cut short leaves its event leased, and a replica posts it when the lease ends.
struct OperationalWebhookService: Service, CustomStringConvertible {
    let relay: OperationalWebhooks
    let database: PQConnectionPool
    let listenConninfo: String?
    let logger: Logger

    /// What ServiceLifecycle logs at start: the relay's settings would show the secret and the
    /// conninfo.
    var description: String { "OperationalWebhookService(url: \(URLRedaction.redacted(relay.configuration.url)))" }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await relay.run(database: database, listenConninfo: listenConninfo, logger: logger)
        }
    }
}
