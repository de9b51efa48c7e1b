import Foundation
import LibPQ

/// One webhook to one OAuth client, as recorded in `webhook_deliveries`.
public struct Delivery: Sendable, Equatable {
    /// `pending`, `delivered`, `failed` or `cancelled`.
    public enum Status: String, Sendable, CaseIterable {
        case pending, delivered, failed, cancelled
    }

    /// Also the `X-Webhook-Delivery` header of every attempt.
    public let deliveryID: UUID
    public let event: String
    public let status: String
    public let attempts: Int
    public let lastHTTPStatus: Int?
    public let lastError: String?
    public let oauthClientID: String
    public let integrationAccountID: String
    public let userID: String
    /// The job whose fan-out created it.
    public let sourceJobID: Int64
    public let createdAt: Date
    public let updatedAt: Date
    public let deliveredAt: Date?
    /// The exact body sent on every attempt; read only by ``Deliveries/get(_:)``.
    public let payload: String?

    static let columns = """
        delivery_id, event, status, attempts, last_http_status, last_error, oauth_client_id,
        integration_account_id, user_id, source_job_id, created_at, updated_at, delivered_at
        """

    init(_ row: PQRow, withPayload: Bool) throws {
        deliveryID = try row.decode("delivery_id")
        event = try row.decode("event")
        status = try row.decode("status")
        attempts = try row.decode("attempts")
        lastHTTPStatus = try row.decodeIfPresent("last_http_status")
        lastError = try row.decodeIfPresent("last_error")
        oauthClientID = try row.decode("oauth_client_id")
        integrationAccountID = try row.decode("integration_account_id")
        userID = try row.decode("user_id")
        sourceJobID = try row.decode("source_job_id")
        createdAt = try row.decode("created_at")
        updatedAt = try row.decode("updated_at")
        deliveredAt = try row.decodeIfPresent("delivered_at")
        payload = withPayload ? try row.decode("payload") : nil
    }
}

/// One HTTP attempt of a delivery.
public struct DeliveryAttemptRecord: Sendable, Equatable {
    public let attempt: Int
    public let attemptedAt: Date
    /// The URL called, redacted by ``URLRedaction`` (again, for rows stored under an older rule).
    public let url: String
    public let httpStatus: Int?
    /// When no response came: what went wrong (`timeout`, `connect_failed`, ...).
    public let errorClass: String?
    public let error: String?
    public let durationMilliseconds: Int
    public let responseExcerpt: String?
    public let workerID: String?
    public let jobID: Int64?

    init(_ row: PQRow) throws {
        attempt = try row.decode("attempt")
        attemptedAt = try row.decode("attempted_at")
        url = URLRedaction.redacted(try row.decode("url"))
        httpStatus = try row.decodeIfPresent("http_status")
        errorClass = try row.decodeIfPresent("error_class")
        error = try row.decodeIfPresent("error")
        durationMilliseconds = try row.decode("duration_ms")
        responseExcerpt = try row.decodeIfPresent("response_excerpt")
        workerID = try row.decodeIfPresent("worker_id")
        jobID = try row.decodeIfPresent("job_id")
    }
}
