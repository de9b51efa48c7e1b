import Foundation
import JobQueue
import LibPQ
import Logging
import Metrics

/// POSTs the operational events of `webhook_worker.endpoint_events` to the web app (`run
/// --operational-url`), signed like a webhook, so that it can tell an OAuth application's owner
/// what happened to their endpoint without reading our tables.
///
/// The table is the outbox: every replica with the URL set runs a relay; each event goes to one
/// of them at a time (`FOR UPDATE SKIP LOCKED`, then a lease as long as a request), is marked
/// posted on a 2xx, and is tried again with a growing wait on anything else. Delivery is at least
/// once: a replica that stops between the POST and the mark leaves the event to be posted again
/// when its lease ends, with the same `webhook-id`, by which the web app can tell.
public struct OperationalWebhooks: Sendable, CustomStringConvertible {
    public struct Configuration: Sendable, CustomStringConvertible {
        /// The web app's endpoint. It is the operator's own and trusted: the network policy that
        /// keeps deliveries off internal addresses does not apply to it, and neither does the
        /// egress proxy.
        public var url: String
        /// Signs each POST as deliveries are signed (`webhook-signature`, `X-Webhook-Secret`);
        /// nil sends them unsigned.
        public var secret: String?
        public var userAgent: String
        public var requestTimeout: Duration
        /// With the endpoints' `--endpoint-disable-after`, each event about a failing endpoint
        /// says when it will be disabled.
        public var disableAfter: Duration?
        /// Events at most this old are posted; older ones (recorded while no replica had a URL,
        /// or failing for this long) are left: they are no longer news.
        public var window: Duration = .seconds(86_400)
        /// Events taken per statement, and POSTs at once.
        public var batchSize = 32
        /// How often a relay looks for events when no notification woke it (a lost one, a retry
        /// that came due).
        public var pollInterval: Duration = .seconds(1)
        /// The wait after the first failed POST of an event, doubling up to ``maxRetryWait``.
        public var firstRetryWait: Duration = .seconds(1)
        public var maxRetryWait: Duration = .seconds(300)

        public init(
            url: String, secret: String?, userAgent: String, requestTimeout: Duration, disableAfter: Duration?
        ) {
            self.url = url
            self.secret = secret
            self.userAgent = userAgent
            self.requestTimeout = requestTimeout
            self.disableAfter = disableAfter
        }

        /// Never the secret, nor the URL's credentials.
        public var description: String {
            "OperationalWebhooks.Configuration(url: \(URLRedaction.redacted(url)), signed: \(secret != nil))"
        }

        /// The wait before the next POST of an event whose `attempts`th POST failed; a
        /// `Retry-After` the web app sent wins when it is longer.
        public func retryWait(afterAttempt attempts: Int, retryAfter: Duration? = nil) -> Duration {
            let doublings = min(max(attempts - 1, 0), 20)
            let wait = min(maxRetryWait, firstRetryWait * (1 << doublings))
            return max(wait, min(retryAfter ?? .zero, maxRetryWait))
        }
    }

    /// What one pass did.
    public struct Pass: Sendable, Equatable {
        public var taken: Int
        public var posted: Int
        public var failed: Int

        public init(taken: Int = 0, posted: Int = 0, failed: Int = 0) {
            self.taken = taken
            self.posted = posted
            self.failed = failed
        }
    }

    public let configuration: Configuration
    public var description: String { "OperationalWebhooks(\(configuration))" }
    private let sender: WebhookSender
    private let postsCounter: (posted: Counter, failed: Counter)

    static let take = PQQuery("takeOperationalEvents", EmbeddedSQL.takeOperationalEvents)
    static let markPosted = PQQuery("markOperationalEventsPosted", EmbeddedSQL.markOperationalEventsPosted)
    static let retry = PQQuery("retryOperationalEvents", EmbeddedSQL.retryOperationalEvents)

    public init(configuration: Configuration) {
        self.configuration = configuration
        // Its own client: the web app's address is trusted (private networks and http allowed),
        // and no proxy stands between the worker and its own web app.
        self.sender = WebhookSender(
            configuration: WebhookDeliveryConfiguration(
                requestTimeout: configuration.requestTimeout, allowHTTP: true, allowPrivateNetworks: true,
                userAgent: configuration.userAgent, connectionsPerHost: configuration.batchSize))
        postsCounter = (
            Counter(label: DeliveryMetricNames.worker.operationalPosts, dimensions: [("outcome", "posted")]),
            Counter(label: DeliveryMetricNames.worker.operationalPosts, dimensions: [("outcome", "failed")])
        )
    }

    public func shutdown() async throws {
        try await sender.shutdown()
    }

    /// Relays until the task is cancelled: a pass whenever an event is announced on
    /// ``EndpointEvents/channel`` (listening on `listenConninfo`), and every ``Configuration/pollInterval``.
    public func run(database: PQConnectionPool, listenConninfo: String?, logger: Logger) async {
        let (wakeUps, ring) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await PQListener.withListener(
            conninfo: listenConninfo, channels: [EndpointEvents.channel],
            applicationName: PQConnection.defaultApplicationName + "-operational", logger: logger
        ) { listener in
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in listener.events { ring.yield() }
                }
                group.addTask {
                    while !Task.isCancelled {
                        ring.yield()
                        try? await Task.sleep(for: configuration.pollInterval)
                    }
                }
                group.addTask {
                    for await _ in wakeUps {
                        if Task.isCancelled { break }
                        await drain(database: database, logger: logger)
                    }
                }
                await withTaskCancellationHandler {
                    await group.next()
                } onCancel: {
                    ring.finish()
                }
                group.cancelAll()
            }
        }
    }

    /// Passes until one finds nothing to take; a database error is logged and ends the drain
    /// (the next wake-up tries again).
    func drain(database: PQConnectionPool, logger: Logger) async {
        while !Task.isCancelled {
            do {
                let pass = try await database.withConnection { try await self.pass($0, logger: logger) }
                if pass.taken < configuration.batchSize { return }
            } catch {
                logger.warning(
                    "operational events: could not take or mark events", metadata: ["error": "\(error)"])
                return
            }
        }
    }

    /// Takes due events, POSTs them at once, and records each outcome.
    public func pass(_ connection: PQConnection, logger: Logger, now: Date = Date()) async throws -> Pass {
        let lease = configuration.requestTimeout + .seconds(30)
        let rows = try await connection.query(
            Self.take, [configuration.batchSize, PQInterval(lease), PQInterval(configuration.window)]
        ).rows
        let events = try rows.map { row in
            (
                event: EndpointEvents.Event(
                    id: try row.decode("id"), oauthClientID: try row.decode("oauth_client_id"),
                    event: try row.decode("event"), reason: try row.decodeIfPresent("reason"),
                    deliveryID: try row.decodeIfPresent("delivery_id"),
                    failingSince: try row.decodeIfPresent("failing_since"), createdAt: try row.decode("created_at")),
                attempts: try row.decode("post_attempts", as: Int.self)
            )
        }
        guard !events.isEmpty else { return Pass() }
        let results = await withTaskGroup(of: (Int64, Int, SendResult).self) { group in
            for (event, attempts) in events {
                group.addTask { (event.id, attempts, await self.post(event, now: now, logger: logger)) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        var pass = Pass(taken: events.count)
        let posted = results.filter { $0.2.succeeded }.map(\.0)
        let failed = results.filter { !$0.2.succeeded }
        if !posted.isEmpty {
            try await connection.query(Self.markPosted, [PQArray(posted)])
        }
        if !failed.isEmpty {
            try await connection.query(
                Self.retry,
                [
                    PQArray(failed.map(\.0)),
                    PQArray(
                        failed.map {
                            PQInterval(configuration.retryWait(afterAttempt: $0.1, retryAfter: $0.2.retryAfter))
                        }),
                    PQArray(failed.map { $0.2.error ?? "HTTP \($0.2.status.map(String.init) ?? "?")" }),
                ])
        }
        for (id, attempts, result) in failed {
            logger.warning(
                "operational events: the web app did not take an event; it is tried again later",
                metadata: [
                    "event_id": "\(id)", "attempt": "\(attempts)", "error": "\(result.error ?? "")",
                    "url": "\(URLRedaction.redacted(configuration.url))",
                ])
        }
        pass.posted = posted.count
        pass.failed = failed.count
        postsCounter.posted.increment(by: posted.count)
        postsCounter.failed.increment(by: failed.count)
        return pass
    }

    private func post(_ event: EndpointEvents.Event, now: Date, logger: Logger) async -> SendResult {
        let body = Self.body(event, disableAfter: configuration.disableAfter)
        let id = Self.webhookID(event.id)
        let headers = WebhookDeliverHandler.headers(
            deliveryID: id, event: Self.eventType(event.event), body: body, secret: configuration.secret,
            userAgent: configuration.userAgent, timestamp: Int64(now.timeIntervalSince1970))
        return await sender.post(
            url: configuration.url, headers: headers, body: body, logger: logger,
            redactedURL: URLRedaction.redacted(configuration.url))
    }

    /// `webhook-id` and `X-Webhook-Delivery` of an event's POSTs: the same on every try.
    public static func webhookID(_ eventID: Int64) -> String { "endpoint-event-\(eventID)" }

    /// `X-Webhook-Event` and the body's `type`: `endpoint.` and the event's name.
    public static func eventType(_ event: String) -> String { "endpoint.\(event)" }

    /// The body: `{"type", "id", "created_at", "data": {...}}`, keys sorted, times in UTC ISO 8601.
    public static func body(_ event: EndpointEvents.Event, disableAfter: Duration?) -> [UInt8] {
        func time(_ date: Date?) -> Any { date.map { UTCTime.iso8601($0) } ?? NSNull() }
        var data: [String: Any] = [
            "oauth_client_id": event.oauthClientID,
            "event": event.event,
            "reason": event.reason ?? NSNull(),
            "delivery_id": event.deliveryID ?? NSNull(),
            "failing_since": time(event.failingSince),
        ]
        if let since = event.failingSince, let disableAfter,
            event.kind == .circuitOpened
        {
            data["disabled_at_the_latest"] = time(
                since.addingTimeInterval(Double(disableAfter.totalMilliseconds) / 1000))
        }
        let object: [String: Any] = [
            "type": eventType(event.event), "id": webhookID(event.id), "created_at": time(event.createdAt),
            "data": data,
        ]
        let json = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return Array(json ?? Data("{}".utf8))
    }
}
