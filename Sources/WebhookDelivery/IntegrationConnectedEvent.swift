import Foundation
import LibPQ

/// The body of an `integration.connected` webhook, serialized once at fan-out.
///
/// Keys are written in the documented order, compactly, so the bytes are stable and readable:
/// `{"event":"integration.connected","user_id":...,"integration":{...},"timestamp":...}`.
struct IntegrationConnectedEvent: Sendable {
    var userID: String
    var integrationAccountID: String
    var provider: String
    var providerAccountID: String?
    var mcpEndpointBase: String
    var name: String
    var icon: String?
    var timestamp: Date

    var mcpEndpoint: String? {
        providerAccountID.map {
            "\(mcpEndpointBase.hasSuffix("/") ? String(mcpEndpointBase.dropLast()) : mcpEndpointBase)/\(provider)/\($0)"
        }
    }

    func body() -> String {
        var json = JSONText()
        json.beginObject()
        json.field("event", "integration.connected")
        json.field("user_id", userID)
        json.key("integration")
        json.beginObject()
        json.field("id", integrationAccountID)
        json.field("provider", provider)
        json.field("account_id", providerAccountID)
        json.field("mcp_endpoint", mcpEndpoint)
        json.field("name", name)
        json.field("icon", icon)
        json.endObject()
        json.field("timestamp", Self.timestamp(timestamp))
        json.endObject()
        return json.text
    }

    /// UTC with milliseconds, truncated like JavaScript's `toISOString()`: `2024-01-15T10:30:00.000Z`.
    static func timestamp(_ date: Date) -> String {
        UTCTime.iso8601(date, fractionDigits: 3)
    }
}

/// A minimal JSON writer that keeps key order.
struct JSONText {
    private(set) var text = ""
    private var needsComma = false

    mutating func beginObject() {
        separate()
        text += "{"
        needsComma = false
    }

    mutating func endObject() {
        text += "}"
        needsComma = true
    }

    mutating func key(_ key: String) {
        separate()
        Self.quote(key, into: &text)
        text += ":"
        needsComma = false
    }

    mutating func field(_ key: String, _ value: String?) {
        self.key(key)
        if let value { Self.quote(value, into: &text) } else { text += "null" }
        needsComma = true
    }

    private mutating func separate() {
        if needsComma { text += "," }
    }

    static func quote(_ value: String, into text: inout String) {
        text += "\""
        // Most values need no escape: appended whole. Scalar by scalar, every fan-out's body cost
        // 6 % of the worker's CPU with one recipient an event.
        if !needsEscape(value) {
            text += value
            text += "\""
            return
        }
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            // U+FEFF too: some parsers (Foundation's on Linux) drop it raw at a string's start.
            case _
            where scalar.value < 0x20 || scalar.value == 0x2028 || scalar.value == 0x2029 || scalar.value == 0xFEFF:
                text += String(format: "\\u%04x", scalar.value)
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }

    /// Whether `value` holds a quote, a backslash, a control character, U+2028, U+2029 or U+FEFF
    /// (E2 80 A8, E2 80 A9 and EF BB BF in UTF-8): the characters ``quote(_:into:)`` escapes.
    static func needsEscape(_ value: String) -> Bool {
        var utf8 = value.utf8.makeIterator()
        var previous: (UInt8, UInt8) = (0, 0)
        while let byte = utf8.next() {
            if byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { return true }
            if (byte == 0xA8 || byte == 0xA9) && previous == (0xE2, 0x80) { return true }
            if byte == 0xBF && previous == (0xEF, 0xBB) { return true }
            previous = (previous.1, byte)
        }
        return false
    }
}
