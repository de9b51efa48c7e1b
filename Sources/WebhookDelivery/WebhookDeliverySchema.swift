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

    /// The numbered files of sql/webhook_delivery/, in order.
    public static let migrations: [Migration] = EmbeddedSQL.migrations.map {
        Migration(version: $0.version, name: $0.name, sql: $0.sql)
    }
}
