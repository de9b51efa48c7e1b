import Crypto
import Foundation
import LibPQ

/// The console's tokens, read from `WORKER_CONSOLE_TOKEN`: `name:secret` pairs separated by
/// commas, a bare secret being named `operator`. The name is what the audit table and the logs
/// record as "who"; the secret is never logged, rendered or stored.
struct ConsoleTokens: Sendable {
    struct Token: Sendable {
        let name: String
        /// SHA-256 of the secret: what a presented token is compared with, in constant time.
        let digest: [UInt8]
        /// Signs this token's session cookies and CSRF tokens; derived from the secret, so
        /// sessions survive a restart and end when the secret changes.
        let sessionKey: SymmetricKey
    }

    let tokens: [Token]
    var isEmpty: Bool { tokens.isEmpty }

    static let minimumSecretLength = 16

    /// Parses the variable's value; nil or empty means no token (allowed on loopback only).
    init(_ value: String?) throws {
        guard let value, !value.trimmingCharacters(in: .whitespaces).isEmpty else {
            tokens = []
            return
        }
        var seen = Set<String>()
        var tokens: [Token] = []
        for part in value.split(separator: ",", omittingEmptySubsequences: false) {
            let entry = part.trimmingCharacters(in: .whitespaces)
            var name = "operator"
            var secret = entry
            if let colon = entry.firstIndex(of: ":") {
                name = String(entry[..<colon])
                secret = String(entry[entry.index(after: colon)...])
            }
            guard !name.isEmpty, name.count <= 64,
                name.unicodeScalars.allSatisfy({
                    CharacterSet.alphanumerics.contains($0) || "._-@".unicodeScalars.contains($0)
                })
            else {
                throw SettingError(
                    description:
                        """
                        invalid WORKER_CONSOLE_TOKEN: each entry is name:secret or a bare secret, names made of \
                        letters, digits, '.', '_', '-' or '@' (at most 64)
                        """)
            }
            guard secret.count >= Self.minimumSecretLength else {
                throw SettingError(
                    description:
                        "invalid WORKER_CONSOLE_TOKEN: the secret of '\(name)' has fewer than "
                        + "\(Self.minimumSecretLength) characters"
                )
            }
            guard seen.insert(name).inserted else {
                throw SettingError(description: "invalid WORKER_CONSOLE_TOKEN: the name '\(name)' appears twice")
            }
            let key = SymmetricKey(data: Array(secret.utf8))
            tokens.append(
                Token(
                    name: name, digest: Array(SHA256.hash(data: Array(secret.utf8))),
                    sessionKey: SymmetricKey(
                        data: Array(
                            HMAC<SHA256>.authenticationCode(
                                for: Array("webhook-worker console session".utf8), using: key)))))
        }
        self.tokens = tokens
    }

    /// The token whose secret is `presented`, compared with every token in constant time.
    func match(_ presented: String) -> Token? {
        let digest = Array(SHA256.hash(data: Array(presented.utf8)))
        var found: Token?
        for token in tokens where constantTimeEqual(token.digest, digest) && found == nil {
            found = token
        }
        return found
    }

    func token(named name: String) -> Token? { tokens.first { $0.name == name } }
}

/// Equal bytes, in a time that depends only on the lengths.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for index in a.indices { difference |= a[index] ^ b[index] }
    return difference == 0
}

func constantTimeEqual(_ a: String, _ b: String) -> Bool { constantTimeEqual(Array(a.utf8), Array(b.utf8)) }

/// Who a request acts as, and how it proved it.
struct ConsoleIdentity: Sendable, Equatable {
    enum Method: Sendable, Equatable {
        /// `Authorization: Bearer`: scripts; no CSRF token needed (a browser never adds the header by itself).
        case bearer
        /// The session cookie: browsers; every POST carries the CSRF token.
        case session(nonce: String)
    }

    let actor: String
    let method: Method
}

/// Session cookies and CSRF tokens: `v1.<name>.<expiry>.<nonce>.<HMAC>`, signed with the
/// token's session key (or, without tokens, a key made at start for the `local` actor). A signed-out
/// session's nonce is remembered in the database until its expiry (``ConsoleSignOuts``).
struct ConsoleSessions: Sendable {
    static let cookieName = "wwc_session"
    static let lifetime: TimeInterval = 12 * 3600

    let tokens: ConsoleTokens
    /// Signs the `local` sessions of a console without tokens (loopback only).
    let localKey: SymmetricKey
    static let localActor = "local"

    init(tokens: ConsoleTokens, localKey: SymmetricKey = SymmetricKey(size: .bits256)) {
        self.tokens = tokens
        self.localKey = localKey
    }

    private func key(for actor: String) -> SymmetricKey? {
        if tokens.isEmpty { return actor == Self.localActor ? localKey : nil }
        return tokens.token(named: actor)?.sessionKey
    }

    private static func mac(_ text: String, _ key: SymmetricKey) -> String {
        HexText.lowercase(HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: key))
    }

    /// A new session cookie's value for `actor`, and its nonce.
    func issue(actor: String, now: Date = Date()) -> (value: String, nonce: String)? {
        guard let key = key(for: actor) else { return nil }
        let nonce = HexText.lowercase(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) })
        let expiry = Int(now.timeIntervalSince1970 + Self.lifetime)
        let body = "v1.\(actor).\(expiry).\(nonce)"
        return ("\(body).\(Self.mac(body, key))", nonce)
    }

    /// The identity a cookie value proves, or nil (forged, expired, or its token is gone). Not
    /// whether it was signed out: ask ``ConsoleSignOuts``.
    func verify(_ value: String, now: Date = Date()) -> ConsoleIdentity? {
        // Read from both ends: a token's name may hold dots (`ops.team`, `alice@example.com`), the
        // version, expiry, nonce and MAC never do. The MAC covers the whole body, so there is one
        // way to read a signed value.
        let parts = value.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 5, parts[0] == "v1", let expiry = Int(parts[parts.count - 3]) else { return nil }
        let actor = parts[1..<(parts.count - 3)].joined(separator: ".")
        guard let key = key(for: actor) else { return nil }
        let body = parts.dropLast().joined(separator: ".")
        guard constantTimeEqual(Self.mac(body, key), parts[parts.count - 1]) else { return nil }
        guard Double(expiry) > now.timeIntervalSince1970 else { return nil }
        return ConsoleIdentity(actor: actor, method: .session(nonce: parts[parts.count - 2]))
    }

    /// The CSRF token of a session: every form of its pages carries it, every POST must.
    func csrfToken(actor: String, nonce: String) -> String? {
        key(for: actor).map { Self.mac("csrf.\(nonce)", $0) }
    }

    /// Whether `presented` is the CSRF token of this identity's session (bearer requests need none).
    func checkCSRF(_ presented: String?, for identity: ConsoleIdentity) -> Bool {
        switch identity.method {
        case .bearer: return true
        case .session(let nonce):
            guard let presented, let expected = csrfToken(actor: identity.actor, nonce: nonce) else { return false }
            return constantTimeEqual(expected, presented)
        }
    }
}
