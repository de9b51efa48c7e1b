import Foundation
import JobQueue
import LibPQ
import WebhookDelivery
import WebhookWorkerSchema

/// What every page needs besides its data.
struct PageContext {
    let actor: String
    /// The session's CSRF token, put in every form; nil for bearer requests.
    let csrf: String?
    let readOnly: Bool
    let flash: Flash?
    let canSignOut: Bool
    let path: String
    let query: [String: String]

    /// The page's own URL, for a form's `back`.
    var here: String {
        let query = FormEncoding.encode(self.query.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        return query.isEmpty ? path : "\(path)?\(query)"
    }
}

/// The deliveries page's search fields.
struct DeliverySearchForm {
    var client, user, status, deliveryID, event, from, until: String?
    var search = Deliveries.Search()

    var isEmpty: Bool { [client, user, status, deliveryID, event, from, until].allSatisfy { $0 == nil } }

    init(_ request: ConsoleRequest) throws {
        client = request.field("client")
        user = request.field("user")
        status = request.field("status")
        deliveryID = request.field("id")
        event = request.field("event")
        from = request.field("from")
        until = request.field("until")
        search.client = client
        search.user = user
        search.event = event
        if let status {
            guard let parsed = Delivery.Status(rawValue: status) else {
                throw ConsoleInputError("status must be pending, delivered, failed or cancelled")
            }
            search.status = parsed
        }
        if let deliveryID {
            guard let parsed = UUID(uuidString: deliveryID) else {
                throw ConsoleInputError("'\(deliveryID)' is not a delivery id (a UUID)")
            }
            search.deliveryID = parsed
        }
        search.createdFrom = try from.map { try Self.time($0, "from") }
        search.createdUntil = try until.map { try Self.time($0, "until") }
    }

    /// Whether "Resend all matching" can take this search: a client and a start, no single id.
    var canResendRange: Bool { client != nil && from != nil && deliveryID == nil }

    /// The search as a range to resend: its client (resolved to its id), from `from` until `until`
    /// (or `now`), with its status, user and event.
    func range(_ connection: PQConnection, now: Date) async throws -> Deliveries.Range {
        guard canResendRange, let client, let from = search.createdFrom else {
            throw ConsoleInputError(
                "resending by range needs an OAuth client and a 'Created from', and no delivery id")
        }
        let until = search.createdUntil ?? now
        guard until > from else { throw ConsoleInputError("'until' must be later than 'Created from'") }
        return Deliveries.Range(
            client: try await OAuthClientName(connection).id(for: client), from: from, until: until,
            status: search.status, user: user, event: event)
    }

    /// The fields that carry this search to another page or form.
    var fields: [(String, String?)] {
        [("client", client), ("status", status), ("user", user), ("event", event), ("from", from), ("until", until)]
    }

    static func time(_ text: String, _ name: String) throws -> Date {
        guard let date = ConsoleTime.parse(text) else {
            throw ConsoleInputError(
                "\(name): '\(text)' is neither a duration ago (1h, 2d) nor a time (2026-12-01T10:30)")
        }
        return date
    }
}

/// The dead-letters page's filter, which "retry all matching" and "purge" also take.
struct DeadLetterFilter {
    var kind, reason, client, since: String?
    var includeRequeued = false
    var diedSince: Date?

    init(_ request: ConsoleRequest) throws {
        kind = request.field("kind")
        reason = request.field("reason")
        client = request.field("client")
        since = request.field("since")
        includeRequeued = request.field("include_requeued") != nil
        diedSince = try since.map { try DeliverySearchForm.time($0, "since") }
    }

    var detail: [String: String] {
        var detail: [String: String] = [:]
        for (name, value) in [("kind", kind), ("reason", reason), ("client", client), ("since", since)] {
            if let value { detail[name] = value }
        }
        return detail
    }

    /// The library filter: the client (internal or public id) becomes the ids of its deliveries' dead letters.
    private func filter(_ connection: PQConnection) async throws -> DeadLetters.Filter {
        var filter = DeadLetters.Filter(kind: kind, diedSince: diedSince)
        if let client {
            let key = try await Endpoints(connection).key(for: client)
            filter.ids = try await Deliveries(connection).deadLetterIDs(
                ofClient: String(key.dropFirst("client:".count)))
        }
        return filter
    }

    func list(_ connection: PQConnection) async throws -> [DeadLetter] {
        try await DeadLetters(connection, schema: WebhookWorkerSchema.queue).list(
            try await filter(connection), reason: reason, includeRequeued: includeRequeued && client == nil, limit: 200)
    }

    /// Deletes what ``list(_:)`` shows (every row, not only the first 200) that died before `cutoff`.
    func purge(_ connection: PQConnection, diedBefore cutoff: Date) async throws -> Int {
        try await DeadLetters(connection, schema: WebhookWorkerSchema.queue).purge(
            try await filter(connection), reason: reason, includeRequeued: includeRequeued && client == nil,
            diedBefore: cutoff)
    }

    func requeueableIDs(_ connection: PQConnection) async throws -> [Int64] {
        try await DeadLetters(connection, schema: WebhookWorkerSchema.queue).requeueableIDs(
            try await filter(connection), reason: reason)
    }
}

struct OverviewData: Sendable {
    let statistics: QueueStatistics
    let minutes: [QueueStatistics.Minute]
    let endpoints: [Endpoints.NotClosed]
}

struct DeliveryPageData: Sendable {
    let delivery: Delivery
    let clientName: String?
    let clientPublicID: String?
    let attempts: [DeliveryAttemptRecord]
}

/// A time a form field gives: a duration ago (`1h`, `2d`), an ISO 8601 time, a date, or what a
/// `datetime-local` field sends (`2026-12-01T10:30`, read as UTC).
enum ConsoleTime {
    static func parse(_ text: String) -> Date? {
        if let duration = DurationText.parse(text) { return Date().addingTimeInterval(-duration.totalSeconds) }
        for candidate in [text, text + "Z", text + ":00Z", text + "T00:00:00Z"] {
            if let date = UTCTime.parseISO8601(candidate) { return date }
        }
        return nil
    }

    static func format(_ date: Date?) -> String {
        guard let date else { return "" }
        return UTCTime.iso8601(date, fractionDigits: 0).replacingOccurrences(of: "T", with: " ")
    }
}
