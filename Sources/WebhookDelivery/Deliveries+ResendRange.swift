import Foundation
import JobQueue
import LibPQ

extension Deliveries {
    /// The deliveries a resend by range takes: one OAuth client's, created in `[from, until)`,
    /// narrowed by the optional fields.
    public struct Range: Sendable, Equatable {
        /// The OAuth client (`"OAuthClient".id`).
        public var client: String
        /// Created at or after this time.
        public var from: Date
        /// Created before this time.
        public var until: Date
        public var status: Delivery.Status?
        public var user: String?
        public var event: String?
        public var integrationAccount: String?

        public init(
            client: String, from: Date, until: Date, status: Delivery.Status? = nil, user: String? = nil,
            event: String? = nil, integrationAccount: String? = nil
        ) {
            self.client = client
            self.from = from
            self.until = until
            self.status = status
            self.user = user
            self.event = event
            self.integrationAccount = integrationAccount
        }
    }

    /// What a resend by range did, or (dry run) would do.
    public struct RangeResend: Sendable, Equatable {
        /// Deliveries that matched, each counted once, as the batches read them.
        public var matched = 0
        /// Given a fresh job (a dry run: those that would be, having no job now).
        public var resent = 0
        /// Left alone: a job for it was already queued or running.
        public var skippedLive = 0
        /// Transactions (a dry run: reads) it took.
        public var batches = 0

        public init() {}
    }

    static let rangePage = PQQuery("resendRangePage", EmbeddedSQL.resendRangePage)
    static let rangeMarkPending = PQQuery("resendRangeMarkPending", EmbeddedSQL.resendRangeMarkPending)

    /// Sends every delivery of `range` again, as ``resend(_:)`` sends one: same delivery id, same
    /// bytes, a fresh chain of attempts, the recipient checked again before sending. A delivery
    /// whose job is queued or running already is skipped (its unique key, `webhook.deliver:<id>`,
    /// is taken), so a delivery never has two live jobs, however many resends run at once.
    ///
    /// Runs `batchSize` deliveries per transaction, in creation order: each batch enqueues its
    /// jobs in one statement (the queue skips the keys that are live, waiting for a concurrent
    /// transaction that inserts the same key to end), then marks the deliveries that got one
    /// `pending`. A delivery that changes while it runs is read as it is when its batch runs.
    /// - Parameters:
    ///   - dryRun: change nothing; count what would be resent and what would be skipped.
    ///   - progress: called after each batch with the counts so far.
    public func resend(
        _ range: Range, batchSize: Int = 500, dryRun: Bool = false, progress: (RangeResend) -> Void = { _ in }
    ) async throws -> RangeResend {
        precondition(batchSize > 0, "batchSize must be positive")
        var summary = RangeResend()
        var cursor: (at: String, id: UUID)?
        while true {
            let (rows, done) = try await connection.transaction { connection -> ([PageRow], BatchCounts) in
                let rows = try await connection.query(
                    Self.rangePage, Self.pageBindings(range, after: cursor, limit: batchSize)
                ).rows.map(PageRow.init)
                return (rows, try await Self.resendBatch(rows, range: range, dryRun: dryRun, on: connection))
            }
            guard let last = rows.last else { return summary }
            cursor = (last.cursorAt, last.id)
            summary.matched += rows.count
            summary.resent += done.resent
            summary.skippedLive += rows.count - done.resent
            summary.batches += 1
            progress(summary)
            if rows.count < batchSize { return summary }
        }
    }

    private struct PageRow {
        let id: UUID
        let client: String
        let cursorAt: String

        init(_ row: PQRow) throws {
            id = try row.decode("delivery_id")
            client = try row.decode("oauth_client_id")
            cursorAt = try row.decode("cursor_at")
        }
    }

    private struct BatchCounts {
        var resent: Int
    }

    private static func pageBindings(
        _ range: Range, after cursor: (at: String, id: UUID)?, limit: Int
    )
        -> [any PQEncodable]
    {
        [
            range.client, range.status?.rawValue, range.user, range.event, range.integrationAccount, range.from,
            range.until, cursor?.at, cursor?.id, limit,
        ]
    }

    /// One batch, in the caller's transaction: the jobs of `rows` (those whose key is free), then
    /// their deliveries made pending; a dry run only asks which keys are taken.
    private static func resendBatch(
        _ rows: [PageRow], range: Range, dryRun: Bool, on connection: PQConnection
    ) async throws -> BatchCounts {
        guard !rows.isEmpty else { return BatchCounts(resent: 0) }
        let jobs = try rows.map { try DeliverPayload(deliveryID: $0.id).job(clientID: $0.client) }
        if dryRun {
            let live = try await QueuedJobs(connection, schema: WebhookDeliverySchema.queue).queued(
                uniqueKeys: jobs.compactMap(\.uniqueKey))
            return BatchCounts(resent: jobs.filter { !live.contains($0.uniqueKey ?? "") }.count)
        }
        let enqueued = try await JobEnqueuer(connection, schema: WebhookDeliverySchema.queue).enqueue(jobs)
        let keys = Set(enqueued.compactMap(\.uniqueKey))
        let resent = zip(rows, jobs).filter { keys.contains($0.1.uniqueKey ?? "") }.map(\.0.id)
        if !resent.isEmpty {
            try await connection.query(Self.rangeMarkPending, [PQArray(resent), range.from])
        }
        return BatchCounts(resent: resent.count)
    }
}
