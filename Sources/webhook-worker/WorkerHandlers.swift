import JobQueue
import WebhookDelivery

/// The job handlers `run` registers, declared once: the worker claims their kinds, and the
/// console's jobs page offers them (``kinds``). A new kind is added here (see docs/development.md).
enum WorkerHandlers {
    static func make(delivery: WebhookDeliveryConfiguration, sender: WebhookSender) -> [any JobHandler] {
        [
            NoopHandler(),
            IntegrationConnectedHandler(configuration: delivery),
            WebhookDeliverHandler(sender: sender),
        ]
    }

    /// The kinds of ``make(delivery:sender:)``, known without building its handlers (a test
    /// checks that the two agree).
    static let kinds = [NoopHandler().kind, IntegrationConnectedHandler.kind, WebhookDeliverHandler.kind]
}
