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

    static let account = PQQuery(
        "integrationAccount",
        """
        SELECT a.id, a."accountId" AS account_id, a."isActive" AS active, a.deleted IS NOT NULL AS deleted,
               d.id AS definition_id, d.name, d.slug, d.icon
        FROM "IntegrationAccount" a
        LEFT JOIN "IntegrationDefinitionV2" d ON d.id = a."integrationDefinitionId"
        WHERE a.id = $1
        """)

    /// Each delivery's job carries the unique key that ``DeliverPayload/job(clientID:)`` gives a
    /// resend (`webhook.deliver:<delivery id>`), and its dead letter keeps it: however a delivery's
    /// job is made (fan-out, resend, a dead letter retried, the console), one is live at a time,
    /// so one delivery id is never sent twice at once.
    static let createDeliveries = PQQuery(
        "createDeliveries",
        """
        WITH created AS (
            INSERT INTO webhook_worker.webhook_deliveries
                (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload)
            SELECT t.delivery_id, 'integration.connected', $1, $2, $3, t.client_id, $6
            FROM unnest($4::text[], $5::uuid[]) AS t(client_id, delivery_id)
            ON CONFLICT ON CONSTRAINT webhook_deliveries_once_per_client DO NOTHING
            RETURNING delivery_id, oauth_client_id
        )
        INSERT INTO webhook_worker.jobs (kind, payload, unique_key, concurrency_key, trace_context)
        SELECT 'webhook.deliver', jsonb_build_object('delivery_id', delivery_id),
               'webhook.deliver:' || delivery_id, 'client:' || oauth_client_id, $7
        FROM created
        """)

    /// The job's own `trace_context`, copied to its deliveries' jobs when the worker does not
    /// trace (tracing on, they get the fan-out span's context, which continues it).
    static let traceContext = PQQuery(
        "fanOutTraceContext", "SELECT trace_context FROM webhook_worker.jobs WHERE id = $1")

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
                try await connection.query(Self.account, [accountID])
            }
            let recipients = try await tracing.withStatementSpan(Recipients.forUser.name) {
                try await connection.query(Recipients.forUser, [userID])
            }
            var stored: String?
            if !tracing.isOn {
                stored = try await connection.query(Self.traceContext, [job.id]).first?.decodeIfPresent(
                    "trace_context", as: String.self)
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

        let clients: [String] = try recipientRows.rows.map { try $0.decode("id") }
        guard !clients.isEmpty else {
            context.logger.debug("no OAuth client is subscribed to this user's integrations; nothing to send")
            return .complete
        }
        let event = IntegrationConnectedEvent(
            userID: userID, integrationAccountID: accountID, provider: slug,
            providerAccountID: try account.decodeIfPresent("account_id"),
            mcpEndpointBase: configuration.mcpEndpointBase, name: try account.decode("name"),
            icon: try account.decodeIfPresent("icon"), timestamp: job.createdAt)
        let body = String(decoding: event.body(), as: UTF8.self)
        let deliveryIDs = clients.map { _ in UUID() }
        context.logger.info("fanning out integration.connected", metadata: ["recipients": "\(clients.count)"])
        return .complete(statements: [
            BoundStatement(
                Self.createDeliveries,
                [
                    job.id, accountID, userID, PQArray(clients), PQArray(deliveryIDs), body,
                    tracing.currentTraceContext() ?? stored,
                ])
        ])
    }
}
