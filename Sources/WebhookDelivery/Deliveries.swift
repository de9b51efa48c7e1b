import Foundation
import JobQueue
import LibPQ

/// The delivery history's operations: list, show, resend, cancel and prune, for operators and
/// consoles.
public struct Deliveries: Sendable {
    public let connection: PQConnection

    public init(_ connection: PQConnection) {
        self.connection = connection
    }

    /// Which deliveries to list; nil fields match everything.
    public struct Filter: Sendable, Equatable {
        /// Only this OAuth client (`"OAuthClient".id`).
        public var client: String?
        public var status: Delivery.Status?
        /// Only those created at or after this time.
        public var createdSince: Date?

        public init(client: String? = nil, status: Delivery.Status? = nil, createdSince: Date? = nil) {
            self.client = client
            self.status = status
            self.createdSince = createdSince
        }
    }

    static let list = PQQuery(
        "listDeliveries",
        """
        SELECT \(Delivery.columns) FROM webhook_worker.webhook_deliveries
        WHERE ($1::text IS NULL OR oauth_client_id = $1) AND ($2::text IS NULL OR status = $2)
          AND ($3::timestamptz IS NULL OR created_at >= $3)
        ORDER BY created_at DESC, delivery_id LIMIT $4
        """)

    /// Deliveries matching `filter`, newest first, without their payloads.
    public func list(_ filter: Filter = Filter(), limit: Int = 100) async throws -> [Delivery] {
        try await connection.query(Self.list, [filter.client, filter.status?.rawValue, filter.createdSince, limit]).rows
            .map { try Delivery($0, withPayload: false) }
    }

    static let get = PQQuery(
        "showDelivery",
        """
        SELECT \(Delivery.columns), payload FROM webhook_worker.webhook_deliveries
        WHERE delivery_id = $1::uuid AND \(DeliveryID.window("created_at", 2))
        """)

    /// `id`, then the earliest `created_at` its delivery may have.
    static func withSince(_ id: UUID) -> [any PQEncodable] {
        [id, DeliveryID.since([id])]
    }

    /// The delivery with this id, with its payload, or nil.
    public func get(_ id: UUID) async throws -> Delivery? {
        try await connection.query(Self.get, Self.withSince(id)).rows.first.map { try Delivery($0, withPayload: true) }
    }

    static let attempts = PQQuery(
        "deliveryAttempts",
        """
        SELECT attempt, attempted_at, url, http_status, error_class, error, duration_ms, response_excerpt, \
        worker_id, job_id
        FROM webhook_worker.delivery_attempts
        WHERE delivery_id = $1::uuid AND attempted_at >= $2::timestamptz
        ORDER BY attempt, id
        """)

    /// The HTTP attempts of delivery `id`, in order.
    public func attempts(of id: UUID) async throws -> [DeliveryAttemptRecord] {
        try await connection.query(Self.attempts, [id, DeliveryID.since([id])]).rows.map(
            DeliveryAttemptRecord.init)
    }

    /// Why a delivery could not be sent again.
    public enum ResendError: Error, Sendable, Equatable, CustomStringConvertible {
        case notFound(UUID)
        /// A job for it is in the queue already.
        case alreadyQueued(UUID)

        public var description: String {
            switch self {
            case .notFound(let id): "no delivery with id \(id.lowercasedText)"
            case .alreadyQueued(let id): "delivery \(id.lowercasedText) already has a job queued"
            }
        }
    }

    static let markPending = PQQuery(
        "resendDelivery",
        """
        UPDATE webhook_worker.webhook_deliveries SET status = 'pending', updated_at = now()
        WHERE delivery_id = $1::uuid AND \(DeliveryID.window("created_at", 2))
        RETURNING oauth_client_id
        """)

    static let exists = PQQuery(
        "deliveryExists",
        """
        SELECT 1 AS one FROM webhook_worker.webhook_deliveries
        WHERE delivery_id = $1::uuid AND \(DeliveryID.window("created_at", 2))
        """)

    /// Sends delivery `id` again: same id, same bytes, a fresh chain of attempts. The recipient is
    /// checked again before sending, as for any attempt.
    /// - Returns: the id of the job that sends it.
    /// - Throws: ``ResendError`` when there is no such delivery or a job for it is queued.
    public func resend(_ id: UUID) async throws -> Int64 {
        let job: Int64? = try await connection.transaction { connection in
            // Any job for it, with or without the unique key the enqueue below would collide with.
            if try await QueuedJobs(connection, schema: WebhookDeliverySchema.queue).isQueued(
                kind: WebhookDeliverHandler.kind, payloadKey: DeliverPayload.idKey, equals: id.lowercasedText)
            {
                return nil
            }
            guard
                let client: String = try await connection.query(Self.markPending, Self.withSince(id)).first?.decode(
                    "oauth_client_id")
            else { return nil }
            guard
                let job = try await JobEnqueuer(connection, schema: WebhookDeliverySchema.queue).enqueue(
                    try DeliverPayload(deliveryID: id).job(clientID: client))
            else { throw ResendError.alreadyQueued(id) }
            return job
        }
        if let job { return job }
        let exists = try await connection.query(Self.exists, Self.withSince(id))
        throw exists.isEmpty ? ResendError.notFound(id) : ResendError.alreadyQueued(id)
    }

    /// What a cancel did.
    public struct Cancelled: Sendable, Equatable {
        /// Deliveries that were pending and are now `cancelled`.
        public var deliveries: Int
        /// Their waiting jobs taken out of the queue.
        public var jobsRemoved: Int
    }

    static let cancel = PQQuery(
        "cancelDeliveries",
        """
        UPDATE webhook_worker.webhook_deliveries
        SET status = 'cancelled', last_error = 'cancelled by an operator', updated_at = now()
        WHERE status = 'pending' AND ($1::uuid IS NULL OR delivery_id = $1::uuid)
          AND ($2::text IS NULL OR oauth_client_id = $2)
        RETURNING delivery_id
        """)

    /// Cancels pending deliveries, delivery `id` or every one of OAuth client `client`: each
    /// becomes `cancelled` and its waiting job leaves the queue (recorded as a cancelled
    /// attempt). An attempt already in flight finishes: if the receiver answers 2xx, it has the
    /// webhook and the delivery ends `delivered`; otherwise it stays cancelled and is not retried.
    public func cancel(id: UUID? = nil, client: String? = nil) async throws -> Cancelled {
        precondition(id != nil || client != nil, "cancel needs a delivery or a client")
        return try await connection.transaction { connection in
            let cancelled: [UUID] = try await connection.query(Self.cancel, [id, client]).rows.map {
                try $0.decode("delivery_id")
            }
            let removed = try await QueuedJobs(connection, schema: WebhookDeliverySchema.queue).cancelWaiting(
                kind: WebhookDeliverHandler.kind, payloadKey: DeliverPayload.idKey,
                in: cancelled.map { $0.lowercasedText }, actor: "operator", reason: "cancelled by an operator")
            return Cancelled(deliveries: cancelled.count, jobsRemoved: removed)
        }
    }

    static let deliveriesOfClient = PQQuery(
        "deliveriesOfClient",
        """
        SELECT delivery_id FROM webhook_worker.webhook_deliveries
        WHERE delivery_id = ANY ($1::uuid[]) AND oauth_client_id = $2
          AND \(DeliveryID.window("created_at", 3))
        """)

    /// The dead letters (not requeued) of OAuth client `client`'s deliveries: pass them to
    /// ``DeadLetters/requeueAll(_:batchSize:progress:)`` as ``DeadLetters/Filter/ids``.
    public func deadLetterIDs(ofClient client: String) async throws -> [Int64] {
        let deadLetters = try await DeadLetters(connection, schema: WebhookDeliverySchema.queue).requeueable(
            kind: WebhookDeliverHandler.kind, payloadKey: DeliverPayload.idKey)
        // Those whose payload names a delivery (a UUID, in either case), then those of the client.
        let named = deadLetters.compactMap { letter in
            letter.value.flatMap(UUID.init(uuidString:)).map { (id: letter.id, delivery: $0) }
        }
        guard !named.isEmpty else { return [] }
        let deliveries = Array(Set(named.map(\.delivery)))
        let rows = try await connection.query(
            Self.deliveriesOfClient, [PQArray(deliveries), client, DeliveryID.since(deliveries)]
        ).rows
        let ofClient = Set(try rows.map { try $0.decode("delivery_id", as: UUID.self) })
        return named.filter { ofClient.contains($0.delivery) }.map(\.id)
    }

    static let clientNames = PQQuery(
        "deliveryClientNames",
        """
        SELECT d.delivery_id, coalesce(c.name, d.oauth_client_id) AS client
        FROM webhook_worker.webhook_deliveries d LEFT JOIN "OAuthClient" c ON c.id = d.oauth_client_id
        WHERE d.delivery_id = ANY ($1::uuid[]) AND \(DeliveryID.window("d.created_at", 2))
        """)

    /// The OAuth client each of `ids` is addressed to: its name in the web app's `"OAuthClient"`,
    /// or its internal id once the client is gone. Deliveries that no longer exist are left out.
    public func clientNames(of ids: [UUID]) async throws -> [UUID: String] {
        guard !ids.isEmpty else { return [:] }
        var names: [UUID: String] = [:]
        for row in try await connection.query(
            Self.clientNames, [PQArray(ids), DeliveryID.since(ids)]
        ).rows {
            names[try row.decode("delivery_id")] = try row.decode("client")
        }
        return names
    }

    /// What ``prune(olderThan:batchSize:progress:)`` deleted.
    public struct Pruned: Sendable, Equatable {
        public var attempts: Int
        public var deliveries: Int
    }

    static let pruneAttempts = PQQuery(
        "pruneDeliveryAttempts",
        """
        DELETE FROM webhook_worker.delivery_attempts WHERE id IN (
            SELECT id FROM webhook_worker.delivery_attempts WHERE attempted_at < $1 LIMIT $2)
        """)

    static let pruneDeliveries = PQQuery(
        "pruneDeliveries",
        """
        WITH batch AS (
            SELECT delivery_id FROM webhook_worker.webhook_deliveries
            WHERE created_at < $1 AND status <> 'pending' AND updated_at < $1 LIMIT $2),
        attempts AS (
            DELETE FROM webhook_worker.delivery_attempts WHERE delivery_id IN (SELECT delivery_id FROM batch))
        DELETE FROM webhook_worker.webhook_deliveries WHERE delivery_id IN (SELECT delivery_id FROM batch)
        """)

    /// Deletes delivery attempts made before `cutoff`, then deliveries that ended (delivered,
    /// failed, cancelled) before it, with their attempts, in batches. Pending deliveries stay.
    /// The replicas' history upkeep drops whole partitions past `WEBHOOK_HISTORY_RETENTION`; this
    /// is for a shorter retention than that, or with the upkeep's retention off.
    /// - Parameter progress: called after each batch with a label and the rows deleted so far.
    public func prune(
        olderThan cutoff: Date, batchSize: Int = 5000, progress: (_ label: String, _ deleted: Int) -> Void = { _, _ in }
    ) async throws -> Pruned {
        let attempts = try await connection.deleteInBatches(Self.pruneAttempts, [cutoff], batchSize: batchSize) {
            progress("delivery attempts", $0)
        }
        let deliveries = try await connection.deleteInBatches(Self.pruneDeliveries, [cutoff], batchSize: batchSize) {
            progress("deliveries", $0)
        }
        return Pruned(attempts: attempts, deliveries: deliveries)
    }
}
