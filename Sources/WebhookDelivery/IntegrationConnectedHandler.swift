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

    /// The account, and the clients this job already made a delivery for (`fanned_out`, a JSON
    /// array): a fan-out that runs again creates nothing twice. They were made after the job
    /// (`$3`: its `created_at`, less the clocks' allowance), so only the partitions since are read.
    ///
    /// `$4` is false on a job's first attempt, which skips that read: deliveries are written only
    /// in the transaction that completes the job, so a job that has them never runs again, and an
    /// attempt given back unrun (a shutdown's release) wrote none. The read stays for any later
    /// attempt. Skipping it matters: with a generic plan made while the day's partition was empty,
    /// it scanned that partition on every fan-out (4.6 to 9 ms a call in release benches, half
    /// of the database's time per delivery).
    static let account = PQQuery(
        "integrationAccount",
        """
        SELECT a.id, a."accountId" AS account_id, a."isActive" AS active, a.deleted IS NOT NULL AS deleted,
               d.id AS definition_id, d.name, d.slug, d.icon,
               (SELECT coalesce(json_agg(oauth_client_id), '[]')::text FROM webhook_worker.webhook_deliveries
                WHERE $4::boolean AND source_job_id = $2 AND created_at >= $3::timestamptz) AS fanned_out
        FROM "IntegrationAccount" a
        LEFT JOIN "IntegrationDefinitionV2" d ON d.id = a."integrationDefinitionId"
        WHERE a.id = $1
        """)

    /// The deliveries, one per recipient. Each one's `webhook.deliver` job is enqueued by the
    /// statement that follows it in the same transaction (``DeliverPayload/job(clientID:)``, as
    /// for a resend): both run in one round trip, with the job's outcome.
    ///
    /// A delivery is made once per (source job, client): the clients the job already has one for
    /// are left out (``account``'s `fanned_out`). Should two fan-outs of one job race past that
    /// read (one of them cannot commit anyway: an outcome is recorded only while its worker holds
    /// the job), the unique violation fails the attempt rather than enqueue jobs for deliveries
    /// that were not made, and its retry finds the deliveries made.
    static let createDeliveries = PQQuery(
        "createDeliveries",
        """
        INSERT INTO webhook_worker.webhook_deliveries
            (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload)
        SELECT t.delivery_id, 'integration.connected', $1, $2, $3, t.client_id, $6
        FROM unnest($4::text[], $5::uuid[]) AS t(client_id, delivery_id)
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
        let (accountRows, recipientRows, stored) = try await context.database.withConnection {
            connection -> (PQResult, PQResult, String?) in
            let account = try await tracing.withStatementSpan(Self.account.name) {
                try await connection.query(
                    Self.account,
                    [accountID, job.id, job.createdAt.addingTimeInterval(-DeliveryID.clockAllowance), job.attempt > 1])
            }
            let recipients = try await tracing.withStatementSpan(Recipients.forUser.name) {
                try await connection.query(Recipients.forUser, [userID])
            }
            var stored: String?
            if !tracing.isOn {
                // The job's own `trace_context`, copied to its deliveries' jobs when the worker
                // does not trace (tracing on, they get the fan-out span's context, which continues it).
                stored = try await QueuedJobs(connection, schema: WebhookDeliverySchema.queue).traceContext(
                    ofJob: job.id)
            }
            return (account, recipients, stored)
        }
        guard let account = accountRows.first else {
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

        let recipients: [String] = try recipientRows.rows.map { try $0.decode("id") }
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
        let body = String(decoding: event.body(), as: UTF8.self)
        let now = Date()
        let deliveryIDs = clients.map { _ in DeliveryID.make(at: now) }
        context.logger.info("fanning out integration.connected", metadata: ["recipients": "\(clients.count)"])
        let traceContext = tracing.currentTraceContext() ?? stored
        let jobs = try zip(clients, deliveryIDs).map { client, deliveryID in
            var job = try DeliverPayload(deliveryID: deliveryID).job(clientID: client)
            job.traceContext = traceContext
            return job
        }
        return .complete(statements: [
            BoundStatement(
                Self.createDeliveries, [job.id, accountID, userID, PQArray(clients), PQArray(deliveryIDs), body]),
            JobEnqueuer.enqueueing(jobs, in: WebhookDeliverySchema.queue),
        ])
    }
}
