/// Bytes as lower-case hex, without `String(format:)`, which formatting a signature or a UUID
/// byte by byte made a tenth of the worker's CPU at full speed.
public enum HexText {
    static let digits = Array("0123456789abcdef".utf8)

    /// Two lower-case hex digits a byte.
    public static func lowercase(_ bytes: some Sequence<UInt8>) -> String {
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in bytes { append(byte) { text.append($0) } }
        return String(decoding: text, as: UTF8.self)
    }

    /// Hands `write` the two digits of `byte`, the high one first.
    @inline(__always)
    static func append(_ byte: UInt8, _ write: (UInt8) -> Void) {
        write(digits[Int(byte >> 4)])
        write(digits[Int(byte & 0x0f)])
    }
}
