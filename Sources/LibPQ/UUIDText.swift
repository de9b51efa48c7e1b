import Foundation

/// UUIDs as text, the way PostgreSQL writes them (lower-case, 8-4-4-4-12), without Foundation's
/// formatter and parser: on Linux those go through `snprintf` and `sscanf`, and a delivery's id
/// is written out and read back about ten times on its way (its job's payload and unique key,
/// statement parameters, the re-check's rows, headers and logs), about 2 % of the worker's CPU.
extension UUID {
    /// Whether the 8-4-4-4-12 form has a hyphen before the byte at `index`.
    private static func hyphen(before index: Int) -> Bool { index == 4 || index == 6 || index == 8 || index == 10 }

    /// `uuidString.lowercased()`, e.g. `0190f2c4-8e1a-7b3c-9d2e-4f5a6b7c8d9e`.
    public var lowercasedText: String {
        let bytes = uuid
        return String(unsafeUninitializedCapacity: 36) { buffer in
            var out = 0
            withUnsafeBytes(of: bytes) { raw in
                for (index, byte) in raw.enumerated() {
                    if Self.hyphen(before: index) {
                        buffer[out] = UInt8(ascii: "-")
                        out += 1
                    }
                    HexText.append(byte) {
                        buffer[out] = $0
                        out += 1
                    }
                }
            }
            return out
        }
    }

    /// Parses the 8-4-4-4-12 form in either case, as `UUID(uuidString:)` does; anything else is
    /// handed to Foundation's parser, so that what is accepted stays exactly what it accepts.
    public init?(text: String) {
        var text = text
        let parsed: uuid_t? = text.withUTF8 { utf8 in
            guard utf8.count == 36 else { return nil }
            var bytes: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            let ok = withUnsafeMutableBytes(of: &bytes) { out -> Bool in
                var position = 0
                for index in 0..<16 {
                    if Self.hyphen(before: index) {
                        guard utf8[position] == UInt8(ascii: "-") else { return false }
                        position += 1
                    }
                    guard let high = Self.nibble(utf8[position]), let low = Self.nibble(utf8[position + 1]) else {
                        return false
                    }
                    out[index] = high << 4 | low
                    position += 2
                }
                return true
            }
            return ok ? bytes : nil
        }
        if let parsed {
            self.init(uuid: parsed)
        } else if let value = UUID(uuidString: text) {
            self = value
        } else {
            return nil
        }
    }

    private static func nibble(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
