import Crypto
import Foundation
import LibPQ

/// The two signatures a receiver can check.
public enum WebhookSignature {
    /// `X-Webhook-Secret`: lowercase hex HMAC-SHA256 of the body, keyed by the whole secret
    /// string's UTF-8 bytes (the original scheme, kept for existing receivers).
    public static func hex(secret: String, body: [UInt8]) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(secret.utf8)))
        return HexText.lowercase(mac)
    }

    /// `webhook-signature` per Standard Webhooks: `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`,
    /// the key being the base64-decoded rest of a `whsec_` secret, else the secret's UTF-8 bytes.
    public static func standard(secret: String, id: String, timestamp: Int64, body: [UInt8]) -> String {
        var message = Array("\(id).\(timestamp).".utf8)
        message.append(contentsOf: body)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: standardKey(secret)))
        return "v1," + Data(mac).base64EncodedString()
    }

    static func standardKey(_ secret: String) -> [UInt8] {
        if secret.hasPrefix("whsec_") {
            // Accept unpadded base64 too, as other Standard Webhooks libraries do.
            var encoded = String(secret.dropFirst(6))
            encoded += String(repeating: "=", count: (4 - encoded.count % 4) % 4)
            if let decoded = Data(base64Encoded: encoded) { return Array(decoded) }
        }
        return Array(secret.utf8)
    }

    /// Checks a received `X-Webhook-Secret` in constant time.
    public static func verifyHex(_ received: String, secret: String, body: [UInt8]) -> Bool {
        constantTimeEqual(Array(received.lowercased().utf8), Array(hex(secret: secret, body: body).utf8))
    }

    /// Checks a received `webhook-signature` header (space-separated `v1,...` entries) in
    /// constant time; `tolerance` bounds the timestamp's distance from now.
    public static func verifyStandard(
        _ header: String, secret: String, id: String, timestamp: String, body: [UInt8],
        now: Date = Date(), tolerance: TimeInterval = 300
    ) -> Bool {
        guard let seconds = Int64(timestamp), abs(now.timeIntervalSince1970 - Double(seconds)) <= tolerance else {
            return false
        }
        let expected = Array(standard(secret: secret, id: id, timestamp: seconds, body: body).utf8)
        return header.split(separator: " ").contains { constantTimeEqual(Array($0.utf8), expected) }
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }
}
