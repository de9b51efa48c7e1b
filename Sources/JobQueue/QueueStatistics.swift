import Foundation
import LibPQ

/// The queue at a glance, read from its views: depth, waiting, leases, throughput, dead letters
/// and paused kinds.
public struct QueueStatistics: Sendable, Equatable {
    /// Jobs of one kind in one state (`available`, `scheduled`, `retrying`, `running`).
    public struct Depth: Sendable, Equatable {
        public let kind: String
        public let state: String
        public let jobs: Int
        /// Since the oldest of them was due (negative when it is not due yet).
        public let oldestAgeSeconds: Double?
    }

    /// The runnable jobs of one kind, and how long the oldest has waited.
    public struct Waiting: Sendable, Equatable {
        public let kind: String
        public let waiting: Int
        /// Rounded to milliseconds.
        public let oldestWaitSeconds: Double?
    }

    /// The leases one replica holds.
    public struct Replica: Sendable, Equatable {
        public let workerID: String
        public let running: Int
        public let nextLeaseExpiry: Date?
    }

    /// Attempts of one kind finished in the last minute and the last hour.
    public struct Throughput: Sendable, Equatable {
        public let kind: String
        public let succeededLastMinute: Int
        public let failedLastMinute: Int
        public let succeededLastHour: Int
        public let failedLastHour: Int
    }

    /// Dead letters not requeued, of one kind and reason.
    public struct DeadLetterCount: Sendable, Equatable {
        public let kind: String
        public let reason: String
        public let deadLetters: Int
        public let lastDeadAt: Date?
    }

    public let depth: [Depth]
    public let waiting: [Waiting]
    public let replicas: [Replica]
    public let throughput: [Throughput]
    public let deadLetters: [DeadLetterCount]
    public let pausedKinds: [PausedKinds.Pause]

    static func depthQuery(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).statsDepth",
            """
            SELECT kind, state, jobs, extract(epoch FROM oldest_age)::float8 AS oldest_age_seconds
            FROM \(schema).queue_depth ORDER BY kind, state
            """)
    }
    static func waitingQuery(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).statsWaiting",
            """
            SELECT kind, waiting, round(extract(epoch FROM wait)::numeric, 3)::float8 AS oldest_wait_seconds
            FROM \(schema).oldest_waiting ORDER BY kind
            """)
    }
    static func replicasQuery(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).statsReplicas",
            """
            SELECT locked_by AS worker_id, count(*) AS running, min(locked_until) AS next_lease_expiry
            FROM \(schema).jobs WHERE state = 'running' GROUP BY locked_by ORDER BY locked_by
            """)
    }
    static func throughputQuery(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).statsThroughput",
            """
            SELECT kind,
                   count(*) FILTER (WHERE outcome = 'succeeded' AND finished_at > now() - interval '1 minute') AS \
            succeeded_1m,
                   count(*) FILTER (WHERE outcome <> 'succeeded' AND finished_at > now() - interval '1 minute') AS \
            failed_1m,
                   count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded_1h,
                   count(*) FILTER (WHERE outcome <> 'succeeded') AS failed_1h
            FROM \(schema).job_attempts WHERE finished_at > now() - interval '1 hour'
            GROUP BY kind ORDER BY kind
            """)
    }
    static func deadQuery(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).statsDead",
            """
            SELECT kind, reason, dead_letters, last_dead_at FROM \(schema).dead_letters_by_reason
            ORDER BY kind, reason
            """)
    }

    /// Reads every figure, one statement each.
    public static func read(_ connection: PQConnection, schema: JobQueueSchema) async throws -> QueueStatistics {
        let depth = try await connection.query(schema.statements.statsDepth).rows.map { row in
            Depth(
                kind: try row.decode("kind"), state: try row.decode("state"), jobs: try row.decode("jobs"),
                oldestAgeSeconds: try row.decodeIfPresent("oldest_age_seconds"))
        }
        let waiting = try await connection.query(schema.statements.statsWaiting).rows.map { row in
            Waiting(
                kind: try row.decode("kind"), waiting: try row.decode("waiting"),
                oldestWaitSeconds: try row.decodeIfPresent("oldest_wait_seconds"))
        }
        let replicas = try await connection.query(schema.statements.statsReplicas).rows.map { row in
            Replica(
                workerID: try row.decode("worker_id"), running: try row.decode("running"),
                nextLeaseExpiry: try row.decodeIfPresent("next_lease_expiry"))
        }
        let throughput = try await connection.query(schema.statements.statsThroughput).rows.map { row in
            Throughput(
                kind: try row.decode("kind"), succeededLastMinute: try row.decode("succeeded_1m"),
                failedLastMinute: try row.decode("failed_1m"), succeededLastHour: try row.decode("succeeded_1h"),
                failedLastHour: try row.decode("failed_1h"))
        }
        let dead = try await connection.query(schema.statements.statsDead).rows.map { row in
            DeadLetterCount(
                kind: try row.decode("kind"), reason: try row.decode("reason"),
                deadLetters: try row.decode("dead_letters"),
                lastDeadAt: try row.decodeIfPresent("last_dead_at"))
        }
        return QueueStatistics(
            depth: depth, waiting: waiting, replicas: replicas, throughput: throughput, deadLetters: dead,
            pausedKinds: try await PausedKinds(connection, schema: schema).list())
    }
}
