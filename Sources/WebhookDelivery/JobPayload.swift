import Foundation
import LibPQ

/// Reads the string fields a handler needs from a job's JSON payload, with a reason a DBA can
/// read when the payload is not what the handler expects.
struct JobPayload {
    let fields: [String: Any]

    init(_ json: PostgresJSON, kind: String) throws(PayloadError) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.bytes), options: [.fragmentsAllowed]),
            let fields = object as? [String: Any]
        else {
            throw PayloadError(description: "the \(kind) payload must be a JSON object")
        }
        self.fields = fields
    }

    func string(_ key: String, kind: String) throws(PayloadError) -> String {
        guard let value = fields[key] else {
            throw PayloadError(description: "the \(kind) payload has no \"\(key)\"")
        }
        guard let text = value as? String, !(value is NSNumber) else {
            throw PayloadError(description: "the \(kind) payload's \"\(key)\" must be a string")
        }
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw PayloadError(description: "the \(kind) payload's \"\(key)\" is empty")
        }
        guard text.utf8.count <= 1024, !text.contains("\u{0}") else {
            throw PayloadError(description: "the \(kind) payload's \"\(key)\" is not a plausible id")
        }
        return text
    }
}

struct PayloadError: Error, CustomStringConvertible {
    let description: String
}
