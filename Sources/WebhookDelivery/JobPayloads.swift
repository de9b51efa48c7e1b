import Foundation
import JobQueue
import LibPQ

/// A job payload a handler reads: decoded from the job's JSON, or refused with a reason a DBA
/// can read in the dead letter (`the webhook.deliver payload's "delivery_id" is not a UUID`).
public protocol JobPayloadDecodable: Decodable {}

extension JobPayloadDecodable {
    /// Decodes `json`, the payload of a job of `kind`.
    public init(_ json: PQJSON, kind: String) throws(PayloadError) {
        self = try Self.decoded(json, kind: kind)
    }

    /// Decodes `json`, the payload of a job of `kind`, with Foundation's decoder.
    static func decoded(_ json: PQJSON, kind: String) throws(PayloadError) -> Self {
        do {
            return try JSONDecoder().decode(Self.self, from: Data(json.bytes))
        } catch let problem as PayloadProblem {
            throw PayloadError(description: "the \(kind) payload's \"\(problem.key)\" \(problem.problem)")
        } catch let missing as PayloadMissingKey {
            throw PayloadError(description: "the \(kind) payload has no \"\(missing.key)\"")
        } catch {
            // Not JSON, or JSON but not an object.
            throw PayloadError(description: "the \(kind) payload must be a JSON object")
        }
    }
}

/// Why a job's payload cannot be read; the description is what the dead letter records.
public struct PayloadError: Error, CustomStringConvertible {
    public let description: String
}

/// A field that is there but unusable, thrown while decoding and worded by ``JobPayloadDecodable``.
struct PayloadProblem: Error {
    let key: String
    let problem: String
}

struct PayloadMissingKey: Error {
    let key: String
}

/// A job payload read the way PostgreSQL writes what it stores (`jsonb` as text:
/// `{"a": "x", "b": "y"}`, its keys in `jsonb`'s order), without Foundation's decoder, which a
/// fan-out and every delivery otherwise pay for. Only when every value is a plain id: a letter or
/// digit first, no escape or control character, at most 1 KiB. Anything else is nil, for the
/// decoder to read with its checks and its errors.
enum StoredPayload {
    /// The text around the values of an object with these keys, in this order.
    struct Keys: Sendable {
        let parts: [[UInt8]]

        init(_ keys: [String]) {
            var parts = [#"{""# + keys[0] + #"": ""#]
            for key in keys.dropFirst() { parts.append(#"", ""# + key + #"": ""#) }
            parts.append(#""}"#)
            self.parts = parts.map { Array($0.utf8) }
        }
    }

    /// What a plain id starts with.
    private static let plainFirst = Set(Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8))

    /// The values, in the keys' order; nil when `bytes` is not that object with plain ids.
    static func strings(_ bytes: [UInt8], _ keys: Keys) -> [String]? {
        var index = 0
        var values: [String] = []
        for (number, part) in keys.parts.enumerated() {
            guard bytes.count - index >= part.count, bytes[index..<(index + part.count)].elementsEqual(part) else {
                return nil
            }
            index += part.count
            guard number < keys.parts.count - 1 else { break }
            // The value, up to its closing quote (the start of the next part).
            let start = index
            while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                if bytes[index] == UInt8(ascii: "\\") || bytes[index] < 0x20 || index - start >= 1024 { return nil }
                index += 1
            }
            guard index > start, plainFirst.contains(bytes[start]),
                let value = String(bytes: bytes[start..<index], encoding: .utf8)
            else { return nil }
            values.append(value)
        }
        return index == bytes.count ? values : nil
    }
}

extension KeyedDecodingContainer {
    /// An id field: a non-empty string of at most 1 KiB without NUL.
    func id(_ key: Key) throws -> String {
        guard contains(key) else { throw PayloadMissingKey(key: key.stringValue) }
        guard let text = try? decode(String.self, forKey: key) else {
            throw PayloadProblem(key: key.stringValue, problem: "must be a string")
        }
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw PayloadProblem(key: key.stringValue, problem: "is empty")
        }
        guard text.utf8.count <= 1024, !text.contains("\u{0}") else {
            throw PayloadProblem(key: key.stringValue, problem: "is not a plausible id")
        }
        return text
    }
}

/// The payload of an `integration.connected` job: `{"integration_account_id", "user_id"}`.
public struct IntegrationConnectedPayload: Codable, JobPayloadDecodable, Sendable, Equatable {
    /// The `"IntegrationAccount".id` that was connected.
    public var integrationAccountID: String
    /// The user who connected it.
    public var userID: String

    public init(integrationAccountID: String, userID: String) {
        self.integrationAccountID = integrationAccountID
        self.userID = userID
    }

    enum CodingKeys: String, CodingKey {
        case integrationAccountID = "integration_account_id"
        case userID = "user_id"
    }

    /// Reads the fields in order, so a payload wrong in several ways is described by its first.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        integrationAccountID = try container.id(.integrationAccountID)
        userID = try container.id(.userID)
    }

    /// Decodes `json`, the payload of a job of `kind`: as PostgreSQL stores it, with plain ids,
    /// directly (``StoredPayload``); anything else through the decoder, with its checks and errors.
    public init(_ json: PQJSON, kind: String) throws(PayloadError) {
        if let ids = StoredPayload.strings(json.bytes, Self.stored) {
            self.init(integrationAccountID: ids[1], userID: ids[0])
            return
        }
        self = try Self.decoded(json, kind: kind)
    }

    /// `jsonb` puts the shorter key first.
    private static let stored = StoredPayload.Keys(["user_id", "integration_account_id"])

    /// The job the web app inserts for this event.
    public var job: NewJob {
        get throws { try NewJob(kind: IntegrationConnectedHandler.kind, encoding: self) }
    }
}

/// The payload of a `webhook.deliver` job: `{"delivery_id"}`.
public struct DeliverPayload: Codable, JobPayloadDecodable, Sendable, Equatable {
    /// The `webhook_deliveries` row to send.
    public var deliveryID: UUID

    public init(deliveryID: UUID) {
        self.deliveryID = deliveryID
    }

    enum CodingKeys: String, CodingKey {
        case deliveryID = "delivery_id"
    }

    /// The payload's key holding the delivery id, for asking the queue about a delivery's jobs.
    static let idKey = CodingKeys.deliveryID.stringValue

    private static let stored = StoredPayload.Keys([idKey])

    /// Decodes `json`, the payload of a job of `kind`: as PostgreSQL stores it, directly
    /// (``StoredPayload``; Foundation's decoder was 2 % of the worker's CPU at full speed);
    /// anything else through the decoder, with its errors.
    public init(_ json: PQJSON, kind: String) throws(PayloadError) {
        if let ids = StoredPayload.strings(json.bytes, Self.stored), let id = UUID(text: ids[0]) {
            deliveryID = id
            return
        }
        self = try Self.decoded(json, kind: kind)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard let id = UUID(text: try container.id(.deliveryID)) else {
            throw PayloadProblem(key: CodingKeys.deliveryID.stringValue, problem: "is not a UUID")
        }
        deliveryID = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        // As PostgreSQL writes a uuid (Foundation's own form is upper case).
        try container.encode(deliveryID.lowercasedText, forKey: .deliveryID)
    }

    /// The job that sends this delivery to OAuth client `clientID`: at most one queued per
    /// delivery, and counted against the client's endpoint limit.
    public func job(clientID: String) throws -> NewJob {
        // The payload written directly, as the encoder wrote it (sorted keys, no spaces): a
        // fan-out makes one per recipient.
        NewJob(
            kind: WebhookDeliverHandler.kind,
            payload: PQJSON(#"{"delivery_id":""# + deliveryID.lowercasedText + #""}"#),
            uniqueKey: "\(WebhookDeliverHandler.kind):\(deliveryID.lowercasedText)",
            concurrencyKey: EndpointCircuit.key(client: clientID))
    }
}
