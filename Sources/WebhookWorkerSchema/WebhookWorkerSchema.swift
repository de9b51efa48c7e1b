import JobQueue
import LibPQ
import WebhookDelivery

/// The worker's database objects, all in the `webhook_worker` schema with one ledger
/// (`webhook_worker.schema_migrations`): the job queue's migrations (JobQueue's, rendered for
/// ``WebhookDeliverySchema/queue``) and the delivery's (`sql/webhook_delivery/`), in version order.
///
/// The two folders were one (`sql/NNN_*.sql`) until the queue became a library of its own, and
/// databases have recorded those files' names and checksums. So the versions are the files' own:
/// the queue has 003 and 004, the delivery 002 and 006, and 005 and 007 had statements of both.
/// A version both have is one migration here, the queue's part first, under the old file's name;
/// the delivery's part of 001 is the comment on `job_attempts` that names this program's prune
/// command, which the queue's own 001 leaves out. Where the text differs from the old file (001's
/// comments; 005's statements grouped by owner), the old file's checksum is accepted as well, so
/// a database migrated by an earlier release sees nothing to apply and no changed migration.
public enum WebhookWorkerSchema {
    public static let name = WebhookDeliverySchema.name

    public static let queue = WebhookDeliverySchema.queue

    /// The names of the versions both folders have: the old single file's.
    static let joinedNames = [1: "001_jobs", 5: "005_endpoints", 7: "007_cheaper_keyed_claim"]

    /// FNV checksums (``Migration/checksum``) of the old `sql/001_jobs.sql` and
    /// `sql/005_endpoints.sql`, as databases migrated before the split recorded them. The other
    /// five old files are reproduced byte for byte.
    static let formerChecksums: [Int: Set<String>] = [1: ["e9a98bf854fa01c3"], 5: ["5a24e3ae378dd8fa"]]

    public static let migrations: [Migration] = compose(
        queue: queue.migrations, delivery: WebhookDeliverySchema.migrations)

    public static var migrator: Migrator { Migrator(schema: name, migrations: migrations) }

    /// Both lists merged by version; a version in both is joined, the queue's part first.
    static func compose(queue: [Migration], delivery: [Migration]) -> [Migration] {
        let versions = Set(queue.map(\.version)).union(delivery.map(\.version)).sorted()
        return versions.map { version in
            let parts = [queue.first { $0.version == version }, delivery.first { $0.version == version }]
                .compactMap { $0 }
            let name: String
            if parts.count == 1 {
                name = parts[0].name
            } else {
                guard let joined = joinedNames[version] else {
                    fatalError("version \(version) is in both sql/job_queue/ and sql/webhook_delivery/")
                }
                name = joined
            }
            return Migration(
                version: version, name: name, sql: parts.map(\.sql).joined(separator: "\n\n"),
                formerChecksums: formerChecksums[version] ?? [])
        }
    }
}
