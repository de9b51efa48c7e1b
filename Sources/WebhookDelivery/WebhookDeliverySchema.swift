import JobQueue
import LibPQ

/// The delivery side's database objects. They live in the `webhook_worker` schema beside the job
/// queue's (JobQueue's migrations, created there through ``queue``), and its migrations are the
/// files of `sql/webhook_delivery/`, compiled in at build time by the EmbedSQL plugin. Its
/// statements name `webhook_worker` as they are written.
public enum WebhookDeliverySchema {
    public static let name = "webhook_worker"

    /// The worker's queue: the schema `webhook_worker`, woken on `webhook_worker_jobs`, metrics
    /// named `webhook_worker_*`.
    public static let queue: JobQueueSchema = {
        do {
            return try JobQueueSchema(name: name, channel: "webhook_worker_jobs", metricPrefix: "webhook_worker")
        } catch {
            fatalError("\(error)")
        }
    }()

    /// The owner of the deliveries' migrations in the ledger: their own line, 1, 2, 3, ...
    public static let migrationOwner = "webhook_delivery"

    /// The numbered files of sql/webhook_delivery/, in order.
    public static let migrations: [Migration] = EmbeddedSQL.migrations.map {
        Migration(owner: Self.migrationOwner, version: $0.version, name: $0.name, sql: $0.sql)
    }

    /// The versions the deliveries' migrations 1, 2, 3, ... had while they shared one sequence with
    /// the queue's, for moving a ledger recorded then (``LedgerMove``).
    public static let formerLedger = LedgerMove(formerVersions: [migrationOwner: [1, 2, 5, 6, 7, 9, 11, 12, 14]])
}
