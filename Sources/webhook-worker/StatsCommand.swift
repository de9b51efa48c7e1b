import ArgumentParser
import Foundation
import LibPQ

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Queue depth, oldest waiting job, replicas, throughput and dead letters at a glance.")

    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        let db = try await OperatorDatabase.open(database)
        let depth = try await db.rows(
            "statsDepth", "SELECT kind, state, jobs, extract(epoch FROM oldest_age)::float8 AS oldest_age_seconds FROM webhook_worker.queue_depth ORDER BY kind, state")
        let waiting = try await db.rows(
            "statsWaiting",
            "SELECT kind, waiting, round(extract(epoch FROM wait)::numeric, 3)::float8 AS oldest_wait_seconds FROM webhook_worker.oldest_waiting ORDER BY kind")
        let replicas = try await db.rows(
            "statsReplicas",
            "SELECT locked_by AS worker_id, count(*) AS running, min(locked_until) AS next_lease_expiry FROM webhook_worker.jobs WHERE state = 'running' GROUP BY locked_by ORDER BY locked_by")
        let throughput = try await db.rows(
            "statsThroughput",
            """
            SELECT kind,
                   count(*) FILTER (WHERE outcome = 'succeeded' AND finished_at > now() - interval '1 minute') AS succeeded_1m,
                   count(*) FILTER (WHERE outcome <> 'succeeded' AND finished_at > now() - interval '1 minute') AS failed_1m,
                   count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded_1h,
                   count(*) FILTER (WHERE outcome <> 'succeeded') AS failed_1h
            FROM webhook_worker.job_attempts WHERE finished_at > now() - interval '1 hour'
            GROUP BY kind ORDER BY kind
            """)
        let dead = try await db.rows(
            "statsDead", "SELECT kind, reason, dead_letters, last_dead_at FROM webhook_worker.dead_letters_by_reason ORDER BY kind, reason")
        let endpoints = try await db.rows(
            "statsEndpoints",
            """
            SELECT substr(key, 8) AS oauth_client_id, state, consecutive_failures, next_probe_at, last_error
            FROM webhook_worker.endpoints WHERE state <> 'closed'
            ORDER BY CASE state WHEN 'disabled' THEN 0 WHEN 'open' THEN 1 ELSE 2 END, key
            """)
        let paused = try await db.rows(
            "statsPaused", "SELECT kind, paused_at, paused_by FROM webhook_worker.paused_kinds ORDER BY kind")
        await db.close()

        let output = Output(json: json)
        if json {
            output.printJSON([
                "queue": depth, "oldest_waiting": waiting, "replicas": replicas, "throughput": throughput, "dead_letters": dead,
                "endpoints_not_closed": endpoints, "paused_kinds": paused,
            ])
            return
        }
        print("queue depth")
        output.list(depth, columns: ["kind", "state", "jobs", "oldest_age_seconds"])
        print("\noldest runnable job waiting")
        output.list(waiting, columns: ["kind", "waiting", "oldest_wait_seconds"])
        print("\nreplicas holding leases (\(replicas.count))")
        output.list(replicas, columns: ["worker_id", "running", "next_lease_expiry"])
        print("\nattempts finished (last minute / last hour)")
        output.list(throughput, columns: ["kind", "succeeded_1m", "failed_1m", "succeeded_1h", "failed_1h"])
        print("\ndead letters not requeued")
        output.list(dead, columns: ["kind", "reason", "dead_letters", "last_dead_at"])
        print("\nendpoints not sending normally (open, half_open, disabled)")
        output.list(endpoints, columns: ["oauth_client_id", "state", "consecutive_failures", "next_probe_at", "last_error"])
        print("\npaused kinds")
        output.list(paused, columns: ["kind", "paused_at", "paused_by"])
    }
}

struct PruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Delete old attempt rows and finished deliveries, in batches.",
        discussion: """
            Removes job_attempts and delivery_attempts older than the age, and deliveries that \
            ended (delivered, failed, cancelled) longer ago, with their attempts. Pending \
            deliveries and dead letters are kept (see dead-letters purge). Retired webhook secrets \
            older than the secret overlap are deleted too.
            """)

    @Option(help: "Age beyond which rows go (e.g. 30d).") var olderThan: Age
    @Option(
        name: .customLong("secret-overlap"),
        help: "Retired webhook secrets older than this are deleted. Env: WEBHOOK_SECRET_OVERLAP. Default: 24h.")
    var secretOverlap: String?
    @Option(help: "Rows per batch.") var batchSize: Int = 5000
    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
    }

    func run() async throws {
        let overlap: Duration = try orExit {
            try SettingSource("secret-overlap", "WEBHOOK_SECRET_OVERLAP", secretOverlap, env: ProcessInfo.processInfo.environment)
                .duration(default: .seconds(86_400), minimum: .zero)
        }
        let db = try await OperatorDatabase.open(database)
        let cutoff = olderThan.cutoff
        let jobAttempts = try await deleteInBatches(
            db, name: "pruneJobAttempts",
            "DELETE FROM webhook_worker.job_attempts WHERE id IN (SELECT id FROM webhook_worker.job_attempts WHERE finished_at < $1 LIMIT $2)",
            [cutoff], batchSize: batchSize, label: "job attempts")
        let deliveryAttempts = try await deleteInBatches(
            db, name: "pruneDeliveryAttempts",
            "DELETE FROM webhook_worker.delivery_attempts WHERE id IN (SELECT id FROM webhook_worker.delivery_attempts WHERE attempted_at < $1 LIMIT $2)",
            [cutoff], batchSize: batchSize, label: "delivery attempts")
        let deliveries = try await deleteInBatches(
            db, name: "pruneDeliveries",
            """
            DELETE FROM webhook_worker.webhook_deliveries WHERE delivery_id IN (
                SELECT delivery_id FROM webhook_worker.webhook_deliveries
                WHERE created_at < $1 AND status <> 'pending' AND updated_at < $1 LIMIT $2)
            """, [cutoff], batchSize: batchSize, label: "deliveries")
        let secrets = try await db.execute(
            "pruneRetiredSecrets", "DELETE FROM webhook_worker.retired_secrets WHERE retired_at < now() - $1::interval",
            [PostgresInterval(overlap)]
        ).affectedRows
        await db.close()
        print(
            "\rdeleted \(jobAttempts) job attempt(s), \(deliveryAttempts) delivery attempt(s), \(deliveries) finished deliveries, \(secrets) expired secret(s)")
    }
}
