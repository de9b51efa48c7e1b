import Foundation
import JobQueue
import LibPQ
import Logging
import Metrics

/// Enqueues the `integration.connected` events that were never enqueued: integration accounts,
/// active and not deleted, created within ``Configuration/window`` (and at least one
/// ``Configuration/interval`` ago), for which no `integration.connected` job was ever inserted.
///
/// The optional trigger (`sql/optional/enqueue_on_integration_account_insert.sql`) must never fail
/// the web app's insert, so an error in its enqueue only raises a warning; and a web app that
/// enqueues after its commit loses the event if it stops in between. Both leave an account
/// without a job, which this finds through `webhook_worker.integration_connected_enqueued` (a
/// trigger on `jobs` records every such job, however it was inserted: a job that ran for a user
/// with no recipient leaves no other trace). Each event it enqueues is counted in
/// `webhook_worker_integration_events_caught_up_total`, which an alert rule watches: a count
/// above zero means events came late, and something upstream needs a look.
///
/// Every replica runs it; a transaction-level advisory lock lets one sweep at a time (the others
/// skip that round), and the job's `unique_key` keeps two sweeps that overlap anyway from
/// enqueueing one account twice.
public struct IntegrationCatchUp: Sendable {
    public struct Configuration: Sendable {
        /// How often a sweep runs, and how old an account must be before it is swept: a web app
        /// that enqueues right after its commit gets that long before its job would be doubled.
        public var interval: Duration
        /// How far back a sweep looks. Accounts older than this are never enqueued by it.
        public var window: Duration
        /// The most accounts one sweep enqueues; the next sweep takes the rest.
        public var batch: Int

        public init(interval: Duration = .seconds(60), window: Duration = .seconds(86_400), batch: Int = 500) {
            self.interval = interval
            self.window = window
            self.batch = batch
        }
    }

    public let configuration: Configuration

    public init(configuration: Configuration = .init()) {
        self.configuration = configuration
    }

    /// The advisory lock's key, "whk_cat": constant, so every replica contends for the same one.
    static let lockKey: Int64 = 0x7768_6b5f_6361_74

    static let lock = PQQuery("catchUpLock", "SELECT pg_try_advisory_xact_lock($1::bigint) AS locked")

    // "createdAt" is a timestamp without time zone that Prisma writes in UTC, hence the
    // conversions. Accounts created before the deliveries' migration 008 are left alone: the
    // ledger starts there, and an older account's event may well have been delivered without a
    // row in it.
    static let sweep = PQQuery(
        "catchUpSweep",
        """
        WITH since AS (
            SELECT greatest(now() - $1::interval,
                            (SELECT applied_at FROM webhook_worker.schema_migrations
                             WHERE owner = 'webhook_delivery' AND version = 8))
                   AT TIME ZONE 'UTC' AS at
        ), missed AS (
            SELECT a.id, a."integratedById" AS user_id
            FROM "IntegrationAccount" a, since
            WHERE a."isActive" IS TRUE AND a.deleted IS NULL
              AND a."createdAt" >= since.at
              AND a."createdAt" < (now() - $2::interval) AT TIME ZONE 'UTC'
              AND NOT EXISTS (SELECT 1 FROM webhook_worker.integration_connected_enqueued e
                              WHERE e.integration_account_id = a.id)
            ORDER BY a."createdAt"
            LIMIT $3
        )
        SELECT id, user_id FROM missed
        """)

    /// The payload the sweep enqueues: ``IntegrationConnectedPayload``'s, with the user as the
    /// account has it (null when it has none: the job then fails, as it would from the web app).
    struct SweptPayload: Encodable {
        let accountID: String
        let userID: String?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: IntegrationConnectedPayload.CodingKeys.self)
            try container.encode(accountID, forKey: .integrationAccountID)
            try container.encode(userID, forKey: .userID)
        }
    }

    /// The job a sweep enqueues for account `accountID`: keyed by the account, so that two sweeps
    /// that overlap enqueue it once.
    static func job(accountID: String, userID: String?) throws -> NewJob {
        try NewJob(
            kind: IntegrationConnectedHandler.kind, encoding: SweptPayload(accountID: accountID, userID: userID),
            uniqueKey: "\(IntegrationConnectedHandler.kind):\(accountID)")
    }

    /// The ledger only needs to outlive the window; twice it leaves room for a slow clock.
    static let forget = PQQuery(
        "catchUpForget",
        """
        DELETE FROM webhook_worker.integration_connected_enqueued
        WHERE integration_account_id IN (
            SELECT integration_account_id FROM webhook_worker.integration_connected_enqueued
            WHERE enqueued_at < now() - 2 * $1::interval
            LIMIT 1000)
        """)

    /// One sweep, if no other replica is sweeping.
    /// - Returns: the accounts whose event it enqueued, or nil when another replica held the lock.
    public func sweep(_ database: PQConnectionPool) async throws -> [String]? {
        let window = PQInterval(configuration.window)
        let interval = PQInterval(configuration.interval)
        let batch = configuration.batch
        return try await database.transaction { connection -> [String]? in
            let locked = try await connection.query(Self.lock, [Self.lockKey])
            guard try locked.first?.decode("locked", as: Bool.self) == true else { return nil }
            let missed: [(account: String, job: NewJob)] = try await connection.query(
                Self.sweep, [window, interval, batch]
            ).rows.map {
                let account: String = try $0.decode("id")
                return (account, try Self.job(accountID: account, userID: try $0.decodeIfPresent("user_id")))
            }
            let enqueued = Set(
                try await JobEnqueuer(connection, schema: WebhookDeliverySchema.queue).enqueue(missed.map(\.job))
                    .compactMap(\.uniqueKey))
            try await connection.query(Self.forget, [window])
            return missed.filter { enqueued.contains($0.job.uniqueKey ?? "") }.map(\.account)
        }
    }

    /// Sweeps every ``Configuration/interval`` until the task is cancelled, the first time one
    /// interval after it starts (nothing a sweep finds is urgent at start-up). A failed sweep is
    /// logged (with its SQLSTATE, never a value) and tried again at the next interval.
    public func run(database: PQConnectionPool, logger: Logger) async {
        let caughtUp = Counter(label: DeliveryMetricNames.worker.integrationEventsCaughtUp)
        // Exported from the start, so that the alert rule sees 0 rather than no series.
        caughtUp.increment(by: 0)
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.interval)
            if Task.isCancelled { return }
            do {
                if let accounts = try await sweep(database), !accounts.isEmpty {
                    caughtUp.increment(by: accounts.count)
                    logger.warning(
                        "enqueued integration.connected events that were never enqueued",
                        metadata: ["events": "\(accounts.count)"])
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("the integration catch-up sweep failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
