import Foundation
import JobQueue
import LibPQ
import WebhookDelivery
import WebhookReceiver

/// A database with the web app's tables, a receiver on loopback, and helpers to seed users,
/// integrations, OAuth clients and grants.
struct DeliveryFixture {
    let database: TestDatabase
    let receiver: WebhookReceiverServer
    let userID = "user-1"
    let accountID = "acct-1"

    static func make(
        database: TestDatabase, respond: @escaping @Sendable (ReceivedWebhook) -> ReceiverResponse = { _ in .ok }
    ) async throws -> DeliveryFixture {
        let receiver = try await WebhookReceiverServer.start(respond: respond)
        let fixture = DeliveryFixture(database: database, receiver: receiver)
        try await database.script(
            """
            INSERT INTO "User" (id, email) VALUES ('user-1', 'one@example.com'), ('user-2', 'two@example.com');
            INSERT INTO "IntegrationDefinitionV2" (id, name, slug, icon) VALUES ('def-linear', 'Linear', 'linear', \
            'https://example.com/linear-icon.png');
            INSERT INTO "IntegrationAccount" (id, "accountId", "integrationDefinitionId", "integratedById") VALUES \
            ('acct-1', 'ext-42', 'def-linear', 'user-1');
            """)
        return fixture
    }

    func url(_ path: String) -> String { "http://127.0.0.1:\(receiver.port)/\(path)" }

    /// An OAuth client; by default eligible: integration scope, active, URL set, granted to user-1.
    func addClient(
        _ id: String, scopes: String = "profile,email,openid,integration", url: String? = nil, secret: String? = nil,
        active: Bool = true, grantUser: String? = "user-1", grantActive: Bool = true, grantRevoked: Bool = false
    ) async throws {
        try await database.query(
            """
            INSERT INTO "OAuthClient" (id, "clientId", name, "allowedScopes", "webhookUrl", "webhookSecret", "isActive")
            VALUES ($1, $1 || '-public', $1, $2, $3, $4, $5)
            """, [id, scopes, url ?? self.url(id), secret, active])
        if let grantUser {
            try await database.query(
                """
                INSERT INTO "OAuthIntegrationGrant" (id, "clientId", "userId", "integrationAccountId", "isActive", \
                "revokedAt")
                VALUES ('grant-' || $1, $1, $2, 'acct-1', $3, CASE WHEN $4 THEN now() END)
                """, [id, grantUser, grantActive, grantRevoked])
        }
    }

    /// Inserts the web app's job row and returns its id.
    @discardableResult
    func connectIntegration(account: String = "acct-1", user: String = "user-1") async throws -> Int64 {
        try await database.scalar(
            """
            INSERT INTO webhook_worker.jobs (kind, payload) VALUES ('integration.connected', \
            jsonb_build_object('integration_account_id', $1::text, 'user_id', $2::text)) RETURNING id
            """,
            [account, user], as: Int64.self)!
    }

    /// A worker with the real handlers; http and loopback allowed unless `policy` says otherwise.
    func startWorker(
        schedule: [Duration] = [.milliseconds(100), .milliseconds(100), .milliseconds(100)],
        requestTimeout: Duration = .seconds(2), allowHTTP: Bool = true, allowPrivateNetworks: Bool = true,
        concurrency: Int = 16, configure: (inout JobWorkerConfiguration) -> Void = { _ in },
        endpoint: (inout WebhookDeliveryConfiguration) -> Void = { _ in }
    ) -> (RunningWorker, WebhookSender) {
        var configuration = WebhookDeliveryConfiguration(
            // The connect timeout stays below the request timeout, as in production (5 s and 15 s):
            // a failing handshake is retried until the connect timeout, then reported as itself.
            retryStrategy: .schedule(schedule), requestTimeout: requestTimeout,
            connectTimeout: min(.seconds(1), requestTimeout / 2), allowHTTP: allowHTTP,
            allowPrivateNetworks: allowPrivateNetworks)
        endpoint(&configuration)
        let sender = WebhookSender(configuration: configuration)
        let worker = RunningWorker(
            database,
            handlers: [
                IntegrationConnectedHandler(configuration: configuration), WebhookDeliverHandler(sender: sender),
            ]
        ) {
            $0.concurrency = concurrency
            $0.pollInterval = .milliseconds(50)
            $0.lease = .seconds(30)
            $0.retryStrategy = .schedule(schedule)
            configure(&$0)
        }
        return (worker, sender)
    }

    /// Runs `replicas` workers (``startWorker``, `concurrency` slots each) until `count`
    /// deliveries are delivered (up to a minute), then stops them and the receiver: true when
    /// they were.
    func deliverWithWorkers(replicas: Int, until count: Int, concurrency: Int = 16) async throws -> Bool {
        let workers = (0..<replicas).map { _ in startWorker(concurrency: concurrency) }
        let delivered = try await eventually(timeout: .seconds(60)) {
            try await database.count(
                "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'delivered'") == count
        }
        for (worker, sender) in workers {
            try await worker.stop()
            try await sender.shutdown()
        }
        await receiver.stop()
        return delivered
    }

    func deliveries() async throws -> [PQRow] {
        try await database.query("SELECT * FROM webhook_worker.webhook_deliveries ORDER BY oauth_client_id").rows
    }

    func delivery(client: String) async throws -> PQRow? {
        try await database.query("SELECT * FROM webhook_worker.webhook_deliveries WHERE oauth_client_id = $1", [client])
            .first
    }

    /// Waits until the one delivery job is back in the queue, waiting for its second attempt
    /// after a failed first (its failure is written).
    func eventuallyRetryScheduled() async -> Bool {
        await eventually {
            (try? await database.count(
                """
                SELECT count(*) FROM webhook_worker.jobs WHERE kind = 'webhook.deliver' AND state = 'available' \
                AND attempt = 1
                """
            )) == 1
        }
    }

    func status(client: String) async -> String? {
        try? await delivery(client: client)?.decode("status", as: String.self)
    }

    func attempts(client: String) async throws -> [PQRow] {
        try await database.query(
            """
            SELECT a.* FROM webhook_worker.delivery_attempts a
            JOIN webhook_worker.webhook_deliveries d USING (delivery_id)
            WHERE d.oauth_client_id = $1 ORDER BY a.attempt
            """, [client]
        ).rows
    }

    func requests(to path: String) -> [ReceivedWebhook] {
        receiver.received.filter { $0.uri == "/" + path }
    }
}

/// Stops a worker and its sender, then the receiver.
func stopAll(_ worker: RunningWorker, _ sender: WebhookSender, _ fixture: DeliveryFixture) async throws {
    try await worker.stop()
    try await sender.shutdown()
    await fixture.receiver.stop()
}
