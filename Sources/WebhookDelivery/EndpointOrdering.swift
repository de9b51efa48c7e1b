import Foundation
import JobQueue
import LibPQ

/// How an endpoint's deliveries are ordered. `fifo`: one delivery in flight at a time, in the
/// order the deliveries' jobs were created; a failing delivery holds the others through its
/// retries (and while the endpoint's circuit holds it), and the next goes once it is delivered,
/// dead-lettered or cancelled. `none` (the default): as many at once as the endpoint's limit allows.
///
/// It is the queue's ordered concurrency key (``ConcurrencyKeyLimits/setOrdered(kind:concurrencyKey:_:)``)
/// on the endpoint's key of `webhook.deliver` jobs.
public enum EndpointOrdering: String, Sendable, CaseIterable {
    case none
    case fifo

    /// The ordering an operator typed (`fifo` or `none`, any case), or nil.
    public init?(text: String) {
        self.init(rawValue: text.trimmingCharacters(in: .whitespaces).lowercased())
    }

    /// What the values mean, for help texts and refusals.
    public static let choices = "fifo or none"
}

extension Endpoints {
    static let deliverKind = WebhookDeliverHandler.kind

    /// The ordering of the endpoint with key `key` (`client:<id>`), whether or not it ever failed.
    public func ordering(key: String) async throws -> EndpointOrdering {
        try await ConcurrencyKeyLimits(connection, schema: WebhookDeliverySchema.queue)
            .isOrdered(kind: Self.deliverKind, concurrencyKey: key) ? .fifo : .none
    }

    /// Sets the endpoint's ordering (on `connection`, inside the caller's transaction if any);
    /// turning FIFO off lets its waiting deliveries go at once. A delivery already in flight when
    /// FIFO is turned on finishes; the next one waits for it.
    /// - Returns: the ordering it had.
    @discardableResult
    public func setOrdering(key: String, _ ordering: EndpointOrdering) async throws -> EndpointOrdering {
        try await ConcurrencyKeyLimits(connection, schema: WebhookDeliverySchema.queue)
            .setOrdered(kind: Self.deliverKind, concurrencyKey: key, ordering == .fifo) ? .fifo : .none
    }
}
