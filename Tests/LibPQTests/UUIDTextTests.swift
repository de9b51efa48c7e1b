import Foundation
import LibPQ
@testable import TestSupport
import Testing

@Suite("UUIDs as text")
struct UUIDTextTests {
    @Test("lowercasedText is Foundation's uuidString lower-cased, and both cases parse back, for any UUID")
    func sameAsFoundation() {
        let seed = UInt64.random(in: 1...UInt64.max)
        var random = SeededGenerator(seed: seed)
        for _ in 0..<5000 {
            var bytes = [UInt8](repeating: 0, count: 16)
            for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255, using: &random) }
            let uuid = UUID(
                uuid: (
                    bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9],
                    bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
                ))
            let expected = uuid.uuidString.lowercased()
            guard uuid.lowercasedText == expected, UUID(text: expected) == uuid, UUID(text: uuid.uuidString) == uuid
            else {
                let read = String(describing: UUID(text: expected))
                Issue.record("seed \(seed): \(expected) written \(uuid.lowercasedText), read \(read)")
                return
            }
        }
    }

    @Test("text that is not a UUID is refused exactly when Foundation refuses it")
    func refusesWhatFoundationRefuses() {
        let seed = UInt64.random(in: 1...UInt64.max)
        var random = SeededGenerator(seed: seed)
        let alphabet = Array("0123456789abcdefABCDEFgG-{} xZ\u{e9}".unicodeScalars)
        for _ in 0..<5000 {
            // A valid UUID's text with one to three characters replaced, dropped or added.
            var scalars = Array(UUID().uuidString.unicodeScalars)
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let position = Int.random(in: 0..<scalars.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: scalars[position] = alphabet.randomElement(using: &random)!
                case 1: scalars.remove(at: position)
                default: scalars.insert(alphabet.randomElement(using: &random)!, at: position)
                }
            }
            var text = ""
            text.unicodeScalars.append(contentsOf: scalars)
            guard UUID(text: text) == UUID(uuidString: text) else {
                Issue.record("seed \(seed): \(text.debugDescription) read as \(String(describing: UUID(text: text)))")
                return
            }
        }
        for text in [
            "", "not a uuid", "0190f2c4-8e1a-7b3c-9d2e-4f5a6b7c8d9", "0190f2c4-8e1a-7b3c-9d2e-4f5a6b7c8d9ee",
            "0190f2c48e1a-7b3c-9d2e-4f5a6b7c8d9e0", "0190f2c4-8e1a-7b3c-9d2e_4f5a6b7c8d9e",
        ] {
            #expect(UUID(text: text) == nil, "\(text)")
        }
        #expect(
            UUID(text: "0190F2C4-8E1A-7B3C-9D2E-4F5A6B7C8D9E")?.lowercasedText == "0190f2c4-8e1a-7b3c-9d2e-4f5a6b7c8d9e"
        )
    }
}
