import JobQueue
import LibPQ
import WebhookDelivery

/// The worker's database objects, all in the `webhook_worker` schema with one ledger
/// (`webhook_worker.schema_migrations`) and two lines of migrations, each numbered by its owner:
/// the job queue's (JobQueue's, rendered for ``WebhookDeliverySchema/queue``), then the
/// deliveries' (`sql/webhook_delivery/`), which build on the queue's tables.
///
/// Until each owner numbered its own, the two shared one version sequence, and databases
/// migrated then recorded it; the migrator moves such a ledger over once (``LedgerMove``), with
/// the shared versions each owner lists.
public enum WebhookWorkerSchema {
    public static let name = WebhookDeliverySchema.name

    public static let queue = WebhookDeliverySchema.queue

    /// The queue's line, then the deliveries'.
    public static let migrations: [Migration] = queue.migrations + WebhookDeliverySchema.migrations

    public static var migrator: Migrator {
        Migrator(
            schema: name, migrations: migrations,
            formerLedger: JobQueueSchema.formerLedger.merging(WebhookDeliverySchema.formerLedger))
    }
}
