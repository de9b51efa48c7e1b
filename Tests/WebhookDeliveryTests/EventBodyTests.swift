import Foundation
@testable import TestSupport
import Testing

@testable import WebhookDelivery

/// The `integration.connected` body as written by hand (``JSONText``): valid JSON whatever the
/// account's name, icon or ids hold, each value read back as it was, with nothing a receiver's
/// parser would choke on or drop (raw control characters, U+2028, U+2029, U+FEFF). No database.
@Suite("integration.connected body")
struct EventBodyTests {
    @Test("any field text makes valid JSON that reads back the same, escaped where it must be")
    func awkwardFields() throws {
        let seed = UInt64.random(in: 1...UInt64(UInt32.max))
        var random = SeededGenerator(seed: seed)
        func text() -> String {
            (0..<Int.random(in: 0...6, using: &random)).map { _ in AwkwardText.pieces.randomElement(using: &random)! }
                .joined()
        }
        for round in 0..<2_000 {
            let event = IntegrationConnectedEvent(
                userID: text(), integrationAccountID: text(), provider: "linear",
                providerAccountID: round % 3 == 0 ? nil : text(), mcpEndpointBase: "https://mcp.example.com/",
                name: text(), icon: round % 2 == 0 ? nil : text(), timestamp: Date(timeIntervalSince1970: 1_700_000_000)
            )
            let body = event.body()
            let context = "seed \(seed), round \(round): \(body.debugDescription)"
            #expect(
                !body.unicodeScalars.contains {
                    $0.value < 0x20 || $0 == "\u{2028}" || $0 == "\u{2029}" || $0 == "\u{FEFF}"
                }, "\(context)")
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], "\(context)")
            let integration = try #require(object["integration"] as? [String: Any], "\(context)")
            // Byte for byte: String's == takes canonically equivalent text for equal.
            func bytes(_ value: Any?) -> [UInt8]? { (value as? String).map { Array($0.utf8) } }
            #expect(bytes(object["user_id"]) == Array(event.userID.utf8), "\(context)")
            #expect(bytes(integration["id"]) == Array(event.integrationAccountID.utf8), "\(context)")
            #expect(bytes(integration["name"]) == Array(event.name.utf8), "\(context)")
            #expect(bytes(integration["icon"]) == event.icon.map { Array($0.utf8) }, "\(context)")
            #expect(bytes(integration["account_id"]) == event.providerAccountID.map { Array($0.utf8) }, "\(context)")
            #expect(object["timestamp"] as? String == "2023-11-14T22:13:20.000Z", "\(context)")
        }
    }

    @Test("a value needs escaping when it holds a quote, a backslash, a control character, U+2028, U+2029 or U+FEFF")
    func escapeDetection() {
        for plain in ["", "Linear", "日本 😀 é", "\u{2027}", "\u{202A}", "â€¨", "\u{FEFE}", "\u{EFBB}"] {
            #expect(!JSONText.needsEscape(plain), "\(plain.debugDescription)")
        }
        for awkward in ["\"", "a\\b", "\n", "\u{1}", "x\u{2028}", "\u{2029}y", "\u{7}", "\u{FEFF}", "a\u{FEFF}b"] {
            #expect(JSONText.needsEscape(awkward), "\(awkward.debugDescription)")
        }
    }
}
