import LibPQ

/// The worker's database objects: the `webhook_worker` schema and its migrations, embedded from
/// `sql/` at build time (`scripts/embed-sql`).
public enum WebhookWorkerSchema {
    public static let name = "webhook_worker"

    public static var migrator: Migrator { Migrator(schema: name, migrations: migrations) }
}
