import Foundation
import JobQueue
import LibPQ
import Logging
import Metrics

/// `webhook.deliver`: re-checks the recipient, signs and POSTs the stored body, and records the
/// attempt and the delivery's status in the transaction that records the job's outcome.
public struct WebhookDeliverHandler: JobHandler {
    public static let kind = "webhook.deliver"
    public var kind: String { Self.kind }
    public var retryStrategy: (any RetryStrategy)? { sender.configuration.retryStrategy }
    /// Deliveries carry their endpoint (`client:<OAuth client id>`) as their concurrency key.
    public var concurrencyLimit: Int? { sender.configuration.endpointConcurrency }
    let sender: WebhookSender
    private let recheck = GatheredReads<UUID>()
    private let pauses = EndpointPauseMemory()

    public init(sender: WebhookSender) {
        self.sender = sender
    }

    /// One row per attempt (``BoundStatement/row(of:_:)``): the attempts of a batch of outcomes
    /// are recorded by one statement. A cancel that landed while the attempt was in flight keeps
    /// the delivery `cancelled` unless the receiver answered 2xx: then it has the webhook, and the
    /// delivery is `delivered` with its `delivered_at`, never a cancelled one that was delivered.
    /// `$11` bounds the deliveries' `created_at` (the earliest of the rows' ``DeliveryID/since(_:)``).
    static let recordAttempt = PQQuery(
        "recordDeliveryAttempts",
        """
        WITH r AS (
            SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[],
                                 $8::int[], $9::text[], $10::text[])
                AS r(delivery_id, job_id, worker_id, url, http_status, error_class, error, duration_ms, \
        response_excerpt,
                     status)
        ), attempt AS (
            INSERT INTO webhook_worker.delivery_attempts
                (delivery_id, attempt, job_id, worker_id, url, http_status, error_class, error, duration_ms, \
        response_excerpt)
            SELECT d.delivery_id, d.attempts + 1, r.job_id, r.worker_id, r.url, r.http_status, r.error_class, r.error,
                   r.duration_ms, r.response_excerpt
            FROM r JOIN webhook_worker.webhook_deliveries d ON d.delivery_id = r.delivery_id
            WHERE \(DeliveryID.window("d.created_at", 11))
        )
        UPDATE webhook_worker.webhook_deliveries d
        SET attempts = d.attempts + 1,
            status = CASE WHEN r.status = 'delivered' THEN r.status WHEN d.status = 'cancelled' THEN d.status
                          ELSE r.status END,
            last_http_status = r.http_status, last_error = r.error, updated_at = now(),
            delivered_at = CASE WHEN r.status = 'delivered' THEN now() ELSE d.delivered_at END
        FROM r
        WHERE d.delivery_id = r.delivery_id AND \(DeliveryID.window("d.created_at", 11))
        """)

    static let markCancelled = PQQuery(
        "cancelDelivery",
        """
        UPDATE webhook_worker.webhook_deliveries
        SET status = 'cancelled', last_error = $2, updated_at = now()
        WHERE delivery_id = $1 AND \(DeliveryID.window("created_at", 3))
        """)

    /// Waits out what is left of the endpoint's pause, unsent and spending no attempt.
    static func waitOutPause(_ left: Duration) -> JobOutcome {
        let seconds = Int(left.totalSeconds.rounded(.up))
        return .snooze(left, reason: "waiting: the endpoint asked for a pause (Retry-After); \(seconds) s left")
    }

    public func handle(_ job: Job, context: JobContext) async throws -> JobOutcome {
        let deliveryID: UUID
        do {
            deliveryID = try DeliverPayload(job.payload, kind: kind).deliveryID
        } catch {
            return .fail(error.description)
        }
        var logger = context.logger
        logger[metadataKey: "delivery.id"] = "\(deliveryID.lowercasedText)"

        let tracing = context.tracing
        guard
            let row = try await tracing.withStatementSpan(
                "recheckDelivery",
                {
                    try await recheck.row(
                        for: deliveryID,
                        read: Recipients.readRechecks(
                            overlap: sender.configuration.secretOverlap, database: context.database))
                })
        else {
            return .fail("delivery \(deliveryID.lowercasedText) does not exist")
        }
        let clientID: String = try row.decode("oauth_client_id")
        logger[metadataKey: "client.id"] = "\(clientID)"
        let status: String = try row.decode("status")
        if status == "delivered" || status == "cancelled" {
            logger.info("delivery is already \(status); nothing to send")
            return .complete
        }
        let event: String = try row.decode("event")
        if let reason = try Self.ineligibility(row, clientID: clientID, event: event) {
            logger.info("recipient no longer qualifies; delivery cancelled", metadata: ["reason": "\(reason)"])
            Counter(
                label: DeliveryMetricNames.worker.deliveryAttempts,
                dimensions: [("outcome", "cancelled"), ("status_class", "none")]
            )
            .increment()
            return .cancel(
                reason,
                statements: [
                    BoundStatement(Self.markCancelled, [deliveryID, reason, DeliveryID.since([deliveryID])])
                ])
        }

        // The endpoint asked for a pause (429 or 503 with Retry-After): wait it out, unsent.
        let endpoint = EndpointCircuit.key(client: clientID)
        if let pausedFor = try row.decodeIfPresent("endpoint_paused_for", as: Double.self), pausedFor > 0 {
            return Self.waitOutPause(.milliseconds(Int64((pausedFor * 1000).rounded(.up))))
        }

        // A pause this replica learnt of since the re-check read the row (another delivery's 429
        // or 503 answered meanwhile): nothing below waits, so the request would go out inside it.
        if let left = pauses.remaining(endpoint) { return Self.waitOutPause(left) }

        // The endpoint's circuit: a healthy endpoint (no row, or closed) costs no statement here.
        let endpointState: String? = try row.decodeIfPresent("endpoint_state")
        let endpointFailures: Int = try row.decodeIfPresent("endpoint_failures") ?? 0
        var probe = false
        if let endpointState, endpointState != "closed" {
            switch try await tracing.withStatementSpan(
                "endpointPermit",
                {
                    try await EndpointCircuit.permit(
                        key: endpoint, configuration: sender.configuration, database: context.database)
                })
            {
            case .send:
                break
            case .probe:
                probe = true
                logger.info("sending a probe to an endpoint whose circuit is open")
            case .wait(let wait):
                return .snooze(wait, reason: "waiting: the endpoint's circuit is open (\(endpointState))")
            case .disabled:
                logger.info("endpoint is disabled; delivery not sent")
                return .fail(
                    """
                    not sent: the endpoint (OAuth client \(clientID)) is disabled; enable it with `webhook-worker \
                    endpoints enable \(clientID)`
                    """,
                    code: .endpointDisabled)
            }
        }

        // The operator's rate limit: a token before the request, or wait unsent. An endpoint
        // without one (NULL in the re-check) costs no statement here.
        if let rate = try row.decodeIfPresent("endpoint_rate_limit", as: Double.self) {
            if let wait = try await tracing.withStatementSpan(
                "endpointTakeToken", { try await EndpointRateLimit.take(key: endpoint, database: context.database) })
            {
                Counter(label: DeliveryMetricNames.worker.endpointRateLimited).increment()
                return .snooze(
                    wait, reason: "waiting: the endpoint's rate limit (\(EndpointLimits.format(rate: rate))/s)")
            }
        }

        let url: String = try row.decode("url")
        let secret: String? = try row.decodeIfPresent("secret").flatMap { $0.isEmpty ? nil : $0 }
        let retired: [String] =
            try row.decodeIfPresent("retired_secrets", as: String.self).flatMap {
                try? JSONDecoder().decode([String].self, from: Data($0.utf8))
            } ?? []
        let body = Array(try row.decode("payload", as: String.self).utf8)
        let id = deliveryID.lowercasedText
        let headers = Self.headers(
            deliveryID: id, event: event, body: body, secret: secret, retiredSecrets: retired,
            userAgent: sender.configuration.userAgent,
            timestamp: Int64(Date().timeIntervalSince1970))

        // Parsed once: it goes into the span, the stored attempt and, on failure, the job's error.
        let redactedURL = URLRedaction.redacted(url)
        let result = await sender.post(
            url: url, headers: headers, body: body, logger: logger, tracing: tracing, redactedURL: redactedURL)
        // Cut off by shutdown or a lost lease: the worker releases the job and this does not count
        // as an attempt. A response that did arrive is recorded whatever happens next: a 2xx
        // thrown away here would be sent again.
        if Task.isCancelled && result.status == nil { throw CancellationError() }
        if let retryAfter = result.retryAfter, retryAfter > .zero {
            let wait = min(retryAfter, sender.configuration.maxEndpointPause)
            pauses.record(endpoint, until: .now + wait)
            do {
                try await tracing.withStatementSpan("endpointPause") {
                    try await EndpointCircuit.pause(key: endpoint, for: wait, database: context.database)
                }
                logger.warning(
                    "endpoint asked for a pause; nothing more goes to it until it ends",
                    metadata: ["endpoint.key": "\(endpoint)", "pause_ms": "\(wait.totalMilliseconds)"])
                Counter(label: DeliveryMetricNames.worker.endpointPauses).increment()
            } catch {
                // The delivery itself still waits its Retry-After; the next 429 pauses the endpoint.
                logger.debug("could not record the endpoint's pause", metadata: ["error": "\(error)"])
            }
        }
        if let verdict = EndpointCircuit.verdict(
            for: result, probe: probe, endpointState: endpointState, endpointFailures: endpointFailures)
        {
            do {
                let state = try await tracing.withStatementSpan("endpointRecord") {
                    try await EndpointCircuit.record(
                        key: endpoint, succeeded: verdict == .healthy, error: result.error,
                        duration: result.duration, configuration: sender.configuration,
                        database: context.database)
                }
                if state != (endpointState ?? "closed") {
                    logger.log(
                        level: state == "closed" ? .info : .warning, "endpoint circuit is now \(state)",
                        metadata: ["endpoint.key": "\(endpoint)"])
                    Counter(label: DeliveryMetricNames.worker.endpointTransitions, dimensions: [("to", state)])
                        .increment()
                }
            } catch {
                // The attempt stands; the circuit catches up with the next result.
                logger.debug("could not record the endpoint's result", metadata: ["error": "\(error)"])
            }
        }
        let newStatus: String
        let outcome: JobOutcome.Decision
        if result.succeeded {
            newStatus = "delivered"
            outcome = .complete
        } else if result.isPermanent {
            newStatus = "failed"
            outcome = .fail(
                reason: "permanent failure delivering to \(redactedURL): \(result.error ?? "unknown")",
                code: .permanentFailure)
        } else {
            newStatus = job.isLastAttempt ? "failed" : "pending"
            outcome = .retry(error: "\(redactedURL): \(result.error ?? "unknown")", after: result.retryAfter)
        }
        let milliseconds = Int(result.duration.totalMilliseconds)
        Counter(
            label: DeliveryMetricNames.worker.deliveryAttempts,
            dimensions: [
                ("outcome", newStatus == "delivered" ? "delivered" : "failed"),
                ("status_class", Self.statusClass(result)),
            ]
        ).increment()
        Timer(label: DeliveryMetricNames.worker.deliveryDuration).recordMilliseconds(milliseconds)
        logger.log(
            level: result.succeeded ? .info : .warning,
            result.succeeded ? "webhook delivered" : "webhook attempt failed",
            metadata: [
                "http.status": "\(result.status.map(String.init) ?? "none")",
                "error.class": "\(result.errorClass?.rawValue ?? "none")", "duration_ms": "\(milliseconds)",
            ])
        let record = BoundStatement.row(
            of: Self.recordAttempt,
            [
                deliveryID, job.id, context.workerID, redactedURL, result.status, result.errorClass,
                result.error, milliseconds, result.excerpt, newStatus,
            ], since: DeliveryID.since([deliveryID]))
        var statements = [record]
        if let adapt = Self.adapt(endpoint: endpoint, result: result, settings: sender.configuration.adaptiveLimit) {
            statements.append(adapt)
        }
        return JobOutcome(outcome, statements: statements)
    }

    /// The endpoint's adaptive limit moves with the outcome, in its transaction, for every
    /// replica (`webhook_worker.endpoints_adapt`, the rule of ``AdaptiveLimit``); one statement
    /// per batch of outcomes. Nil when the result says nothing of the endpoint's capacity.
    static let adaptQuery = PQQuery(
        "adaptEndpointLimits",
        """
        SELECT webhook_worker.endpoints_adapt($1::text[], $2::text[], $3::float8[], $4::int[], $5::int[], \
        $6::int[], $7::float8[], $8::float8[], $9::float8[], $10::float8[])
        """)

    static func adapt(endpoint: String, result: SendResult, settings: AdaptiveLimit.Settings) -> BoundStatement? {
        let signal = AdaptiveLimit.Signal(result)
        let milliseconds: Double
        switch signal {
        case .neutral: return nil
        case .answered(let value): milliseconds = value
        case .overloaded: milliseconds = Double(result.duration.totalMilliseconds)
        }
        return BoundStatement.row(
            of: adaptQuery,
            [
                endpoint, signal.name, milliseconds, settings.floor, settings.initial, settings.ceiling,
                settings.slowFactor, settings.slowFloor, settings.backoff, settings.smoothing,
            ])
    }

    /// The headers of one attempt, signatures included when the client has a secret. During a
    /// rotation's overlap, `webhook-signature` carries one `v1,` signature per secret, the current
    /// one first (Standard Webhooks receivers accept any that verifies); `X-Webhook-Secret` is
    /// the current secret's only. Without a current secret (NULL or empty) the request is
    /// unsigned, retired secrets or not: the web app turned signing off, and signing with a
    /// secret it dropped (perhaps because it leaked) would keep that secret trusted.
    public static func headers(
        deliveryID: String, event: String = "integration.connected", body: [UInt8], secret: String?,
        retiredSecrets: [String] = [], userAgent: String, timestamp: Int64
    ) -> [(String, String)] {
        var headers = [
            ("Content-Type", "application/json"),
            ("User-Agent", userAgent),
            ("X-Webhook-Delivery", deliveryID),
            ("X-Webhook-Event", event),
        ]
        if let secret {
            headers.append(("X-Webhook-Secret", WebhookSignature.hex(secret: secret, body: body)))
            headers.append(("webhook-id", deliveryID))
            headers.append(("webhook-timestamp", String(timestamp)))
            headers.append(
                (
                    "webhook-signature",
                    ([secret] + retiredSecrets).map {
                        WebhookSignature.standard(secret: $0, id: deliveryID, timestamp: timestamp, body: body)
                    }.joined(separator: " ")
                ))
        }
        return headers
    }

    /// Why the recipient no longer qualifies, or nil. A test event (``TestEvents``) is about no
    /// user: it needs the client alone to qualify, not a grant nor the scope.
    static func ineligibility(_ row: PQRow, clientID: String, event: String) throws -> String? {
        if try !row.decode("client_exists", as: Bool.self) { return "OAuth client \(clientID) no longer exists" }
        if try !row.decode("client_active", as: Bool.self) { return "OAuth client \(clientID) is inactive" }
        if (try row.decodeIfPresent("url", as: String.self) ?? "").isEmpty {
            return "OAuth client \(clientID) has no webhook URL"
        }
        if event == TestEvents.event { return nil }
        if try !row.decode("has_scope", as: Bool.self) {
            return "OAuth client \(clientID) no longer has the integration scope"
        }
        if try !row.decode("has_grant", as: Bool.self) {
            return "the user's integration grant to OAuth client \(clientID) was revoked or deactivated"
        }
        return nil
    }

    static func statusClass(_ result: SendResult) -> String {
        guard let status = result.status else { return "none" }
        return "\(status / 100)xx"
    }
}
