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

    /// Decodes `json`, the payload of a job of `kind`. The payload as PostgreSQL stores it
    /// (`{"user_id": "…", "integration_account_id": "…"}`, `jsonb` putting the shorter key first)
    /// with plain ids (a letter or digit first, no escapes, at most 1 KiB) is read directly;
    /// anything else goes through the decoder, with its checks and errors.
    public init(_ json: PQJSON, kind: String) throws(PayloadError) {
        if let stored = Self.stored(json.bytes) {
            self = stored
            return
        }
        self = try Self.decoded(json, kind: kind)
    }

    private static let storedParts = [#"{"user_id": ""#, #"", "integration_account_id": ""#, #""}"#].map {
        Array($0.utf8)
    }

    /// What a plain id starts with: a letter or a digit.
    private static let plainFirst = Set(Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8))

    private static func stored(_ bytes: [UInt8]) -> IntegrationConnectedPayload? {
        var index = 0
        func skip(_ part: [UInt8]) -> Bool {
            guard bytes.count - index >= part.count, bytes[index..<(index + part.count)].elementsEqual(part) else {
                return false
            }
            index += part.count
            return true
        }
        // Up to the closing quote, which is left for the next part.
        func id() -> String? {
            let start = index
            while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                if bytes[index] == UInt8(ascii: "\\") || bytes[index] < 0x20 || index - start >= 1024 { return nil }
                index += 1
            }
            guard index > start, Self.plainFirst.contains(bytes[start]) else { return nil }
            return String(bytes: bytes[start..<index], encoding: .utf8)
        }
        let parts = storedParts
        guard skip(parts[0]), let user = id(), skip(parts[1]), let account = id(), skip(parts[2]),
            index == bytes.count
        else { return nil }
        return IntegrationConnectedPayload(integrationAccountID: account, userID: user)
    }

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

    /// How PostgreSQL writes the payload it stores (`jsonb`): the id between these.
    private static let storedPrefix = Array(#"{"delivery_id": ""#.utf8)
    private static let storedSuffix = Array(#""}"#.utf8)

    /// Decodes `json`, the payload of a job of `kind`. The payload as PostgreSQL stores it is
    /// read directly (Foundation's decoder was 2 % of the worker's CPU at full speed); anything
    /// else goes through the decoder, with its errors.
    public init(_ json: PQJSON, kind: String) throws(PayloadError) {
        let bytes = json.bytes
        let prefix = Self.storedPrefix, suffix = Self.storedSuffix
        if bytes.count == prefix.count + 36 + suffix.count, bytes.starts(with: prefix),
            bytes.suffix(suffix.count).elementsEqual(suffix),
            let id = UUID(uuidString: String(decoding: bytes[prefix.count..<(prefix.count + 36)], as: UTF8.self))
        {
            deliveryID = id
            return
        }
        self = try Self.decoded(json, kind: kind)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard let id = UUID(uuidString: try container.id(.deliveryID)) else {
            throw PayloadProblem(key: CodingKeys.deliveryID.stringValue, problem: "is not a UUID")
        }
        deliveryID = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        // As PostgreSQL writes a uuid (Foundation's own form is upper case).
        try container.encode(deliveryID.uuidString.lowercased(), forKey: .deliveryID)
    }

    /// The job that sends this delivery to OAuth client `clientID`: at most one queued per
    /// delivery, and counted against the client's endpoint limit.
    public func job(clientID: String) throws -> NewJob {
        // The payload written directly, as the encoder wrote it (sorted keys, no spaces): a
        // fan-out makes one per recipient.
        NewJob(
            kind: WebhookDeliverHandler.kind,
            payload: PQJSON(#"{"delivery_id":""# + deliveryID.uuidString.lowercased() + #""}"#),
            uniqueKey: "\(WebhookDeliverHandler.kind):\(deliveryID.uuidString.lowercased())",
            concurrencyKey: EndpointCircuit.key(client: clientID))
    }
}
