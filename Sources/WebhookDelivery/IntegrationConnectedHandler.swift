import Foundation
import JobQueue
import LibPQ
import Logging

/// `integration.connected`: finds the event's recipients and, in the transaction that completes
/// the job, creates one delivery and one `webhook.deliver` job per recipient.
public struct IntegrationConnectedHandler: JobHandler {
    public static let kind = "integration.connected"
    public var kind: String { Self.kind }
    let configuration: WebhookDeliveryConfiguration

    public init(configuration: WebhookDeliveryConfiguration) {
        self.configuration = configuration
    }

    /// Everything the fan-outs of first attempts read, for many at once (``GatheredReads``,
    /// keyed by job): per job (`$1`), its account (`$2`) and definition, the recipients
    /// (``Recipients``, a JSON array of client ids, for user `$3`), and the job's own
    /// `trace_context` when `$4`.
    ///
    /// A first attempt reads no deliveries: they are written only in the transaction that
    /// completes the job, so a job that has them never runs again, and an attempt given back
    /// unrun (a shutdown's release) wrote none. Not even as a subquery switched off by a
    /// parameter: PostgreSQL still set up a scan of every partition of the deliveries the job
    /// could have made (those of today and the days ahead) for each fan-out, 5 % of its CPU with
    /// one recipient an event; with a generic plan made while the day's partition was empty, an
    /// earlier form scanned that partition on every fan-out (4.6 to 9 ms a call).
    static let accounts = PQQuery(
        "integrationAccounts",
        """
        SELECT t.job_id, \(columns(job: "t.job_id", user: "t.user_id", fannedOut: "'[]'"))
        FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(job_id, account_id, user_id)
        JOIN "IntegrationAccount" a ON a.id = t.account_id
        LEFT JOIN "IntegrationDefinitionV2" d ON d.id = a."integrationDefinitionId"
        """)

    /// What a later attempt reads, alone: as ``accounts`` for account `$1`, job `$2`, user `$3`,
    /// and the clients this job already made a delivery for (`fanned_out`, a JSON array), so that
    /// a fan-out that runs again creates nothing twice. They were made after the job (`$5`: its
    /// `created_at`, less the clocks' allowance), so only the partitions since are read.
    static let accountAgain = PQQuery(
        "integrationAccountAgain",
        """
        SELECT \(columns(
            job: "$2", user: "$3",
            fannedOut: """
                (SELECT coalesce(json_agg(oauth_client_id), '[]')::text FROM webhook_worker.webhook_deliveries
                        WHERE source_job_id = $2 AND created_at >= $5::timestamptz)
                """))
        FROM "IntegrationAccount" a
        LEFT JOIN "IntegrationDefinitionV2" d ON d.id = a."integrationDefinitionId"
        WHERE a.id = $1
        """)

    /// The account `a` and definition `d` of a fan-out of `job` for `user` (SQL expressions).
    private static func columns(job: String, user: String, fannedOut: String) -> String {
        """
        a.id, a."accountId" AS account_id, a."isActive" AS active, a.deleted IS NOT NULL AS deleted,
               d.id AS definition_id, d.name, d.slug, d.icon,
               \(fannedOut) AS fanned_out,
               (SELECT coalesce(json_agg(c.id ORDER BY c.id), '[]')::text FROM "OAuthClient" c
                WHERE \(Recipients.eligibility(user: user))) AS recipients,
               (SELECT j.trace_context FROM webhook_worker.jobs j WHERE $4::boolean AND j.id = \(job)) AS trace_context
        """
    }

    /// A fan-out's read in ``accounts``.
    struct FanOut: Hashable, Sendable {
        let jobID: Int64
        let accountID: String
        let userID: String
    }

    /// Reads ``accounts`` for many fan-outs in one statement, for ``GatheredReads``.
    static func readAccounts(database: PQConnectionPool, traceContexts: Bool) -> GatheredReads<FanOut>.Read {
        { fanOuts in
            let result = try await database.query(
                Self.accounts,
                [
                    PQArray(fanOuts.map(\.jobID)), PQArray(fanOuts.map(\.accountID)), PQArray(fanOuts.map(\.userID)),
                    traceContexts,
                ])
            var byJob: [Int64: FanOut] = [:]
            for fanOut in fanOuts { byJob[fanOut.jobID] = fanOut }
            var rows: [FanOut: PQRow] = [:]
            for row in result.rows {
                if let fanOut = byJob[try row.decode("job_id", as: Int64.self)] { rows[fanOut] = row }
            }
            return rows
        }
    }

    private let reads = GatheredReads<FanOut>()

    /// One delivery, a row (``BoundStatement/row(of:_:since:)``) for each recipient. Its
    /// `webhook.deliver` job is a row of the statement that follows it in the same transaction
    /// (``JobEnqueuer/enqueueingFreshRows(_:in:)``: its unique key names the new delivery, so it is
    /// not checked for duplicates). The fan-outs whose outcomes are written together insert all
    /// their deliveries in one statement and all their jobs in another: with one recipient per
    /// event, a statement per fan-out was half of the database's time per delivery.
    ///
    /// A delivery is made once per (source job, client): the clients the job already has one for
    /// are left out (``accountAgain``'s `fanned_out`; a first attempt has none). Should two
    /// fan-outs of one job race past that read (one of them cannot commit anyway: an outcome is
    /// recorded only while its worker holds the job), the unique violation fails the batch, which
    /// is written again outcome by outcome: that attempt fails rather than enqueue jobs for
    /// deliveries that were not made, and its retry finds the deliveries made.
    static let createDelivery = PQQuery(
        "createDeliveryRows",
        """
        INSERT INTO webhook_worker.webhook_deliveries
            (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload)
        SELECT t.delivery_id, 'integration.connected', t.source_job_id, t.account_id, t.user_id, t.client_id,
               t.payload
        FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
            AS t(delivery_id, source_job_id, account_id, user_id, client_id, payload)
        """)

    public func handle(_ job: Job, context: JobContext) async throws -> JobOutcome {
        let accountID: String
        let userID: String
        do {
            let payload = try IntegrationConnectedPayload(job.payload, kind: kind)
            accountID = payload.integrationAccountID
            userID = payload.userID
        } catch {
            return .fail(error.description)
        }

        let tracing = context.tracing
        // The job's own `trace_context` is copied to its deliveries' jobs when the worker does not
        // trace (tracing on, they get the fan-out span's context, which continues it).
        let account: PQRow?
        if job.attempt > 1 {
            account = try await tracing.withStatementSpan(Self.accountAgain.name) {
                try await context.database.query(
                    Self.accountAgain,
                    [
                        accountID, job.id, userID, !tracing.isOn,
                        job.createdAt.addingTimeInterval(-DeliveryID.clockAllowance),
                    ]
                ).first
            }
        } else {
            account = try await tracing.withStatementSpan("integrationAccount") {
                try await reads.row(
                    for: FanOut(jobID: job.id, accountID: accountID, userID: userID),
                    read: Self.readAccounts(database: context.database, traceContexts: !tracing.isOn))
            }
        }
        guard let account else {
            return .fail("integration account \(accountID) does not exist")
        }
        if try account.decode("deleted", as: Bool.self) {
            return .fail("integration account \(accountID) is deleted")
        }
        if try !account.decode("active", as: Bool.self) {
            return .fail("integration account \(accountID) is inactive")
        }
        guard let slug: String = try account.decodeIfPresent("slug") else {
            return .fail("integration account \(accountID) has no integration definition")
        }

        let recipients = try JSONDecoder().decode(
            [String].self, from: Data(try account.decode("recipients", as: String.self).utf8))
        guard !recipients.isEmpty else {
            context.logger.debug("no OAuth client is subscribed to this user's integrations; nothing to send")
            return .complete
        }
        let fannedOut = Set(
            try JSONDecoder().decode([String].self, from: Data(try account.decode("fanned_out", as: String.self).utf8)))
        let clients = recipients.filter { !fannedOut.contains($0) }
        guard !clients.isEmpty else {
            context.logger.debug("this job already made a delivery for every recipient; nothing more to send")
            return .complete
        }
        let event = IntegrationConnectedEvent(
            userID: userID, integrationAccountID: accountID, provider: slug,
            providerAccountID: try account.decodeIfPresent("account_id"),
            mcpEndpointBase: configuration.mcpEndpointBase, name: try account.decode("name"),
            icon: try account.decodeIfPresent("icon"), timestamp: job.createdAt)
        let body = event.body()
        let now = Date()
        let deliveryIDs = clients.map { _ in DeliveryID.make(at: now) }
        context.logger.info("fanning out integration.connected", metadata: ["recipients": "\(clients.count)"])
        let stored: String? = try account.decodeIfPresent("trace_context")
        let traceContext = tracing.currentTraceContext() ?? stored
        let jobs = try zip(clients, deliveryIDs).map { client, deliveryID in
            var job = try DeliverPayload(deliveryID: deliveryID).job(clientID: client)
            job.traceContext = traceContext
            return job
        }
        let deliveries = zip(clients, deliveryIDs).map { client, deliveryID in
            BoundStatement.row(of: Self.createDelivery, [deliveryID, job.id, accountID, userID, client, body])
        }
        // The jobs' unique keys name the deliveries just made, with new ids: nothing to check them for.
        let enqueue = JobEnqueuer.enqueueingFreshRows(jobs, in: WebhookDeliverySchema.queue)
        return .complete(statements: deliveries + enqueue)
    }
}
