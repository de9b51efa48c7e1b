import Foundation
import Synchronization

/// A webhook URL as it may be stored (`delivery_attempts.url`), logged, put in errors and spans,
/// and shown on pages: one rule, applied everywhere through ``redacted(_:)``.
///
/// Webhook URLs carry their secrets in many places: a user name and password, a query
/// (`?token=...`), and the path itself (Slack's `/services/T000/B000/XXXX`, Discord's
/// `/api/webhooks/<id>/<token>`). What an operator needs is where the webhook went, so:
///
/// - the scheme, host and port stay (lower-cased);
/// - a user name or password becomes `***@`, a query `?***` (names and values: a bare query item
///   can be the token), and a fragment, never sent, is dropped;
/// - path segments stay while they are plain words: lower-case letters, `-`, `_`, `.`, with no
///   run of letters longer than 16, or a version such as `v2`. The first segment that is not
///   (digits, upper case, anything percent-encoded, a long run) and every segment after it
///   become `***`: a token's parts come at the end of a path, and an id before it
///   (`T000`) is part of it.
///
/// `https://hooks.example/services/T000/B000/XXXX?x=1` is shown as
/// `https://hooks.example/services/***/***/***?***`. Applying the rule twice changes nothing, so
/// rows stored under an older, weaker rule are redacted again when shown.
public enum URLRedaction {
    /// What stands in for a secret.
    public static let mask = "***"

    /// `url` with its secrets masked (see ``URLRedaction``); `(unparseable URL)` when it has no
    /// scheme and host.
    public static func redacted(_ url: String) -> String {
        // Every attempt redacts its endpoint's URL, and parsing it was 1 % of the worker's CPU:
        // the answers are kept for up to 1,024 URLs (emptied when full), keyed by their bytes, not
        // by String equality, which takes canonically equivalent text for the same. They hold no
        // more than the worker already does.
        let key = Array(url.utf8)
        if let known = recent.withLock({ $0[key] }) { return known }
        let text = redact(url)
        recent.withLock { recent in
            if recent.count >= 1024 { recent.removeAll(keepingCapacity: true) }
            recent[key] = text
        }
        return text
    }

    private static let recent = Mutex<[[UInt8]: String]>([:])

    private static func redact(_ url: String) -> String {
        guard let components = URLComponents(string: url), let scheme = components.scheme,
            var host = components.percentEncodedHost, !host.isEmpty
        else { return "(unparseable URL)" }
        if host.contains(":") && !host.hasPrefix("[") { host = "[\(host)]" }
        var text = scheme.lowercased() + "://"
        if components.percentEncodedUser != nil || components.percentEncodedPassword != nil { text += mask + "@" }
        text += host.lowercased()
        if let port = components.port { text += ":\(port)" }
        var masking = false
        let segments = components.percentEncodedPath.split(separator: "/", omittingEmptySubsequences: false)
        text += segments.enumerated().map { index, segment in
            if index == 0 || segment.isEmpty { return String(segment) }
            masking = masking || !isPlainWord(segment)
            return masking ? mask : String(segment)
        }.joined(separator: "/")
        if let query = components.percentEncodedQuery, !query.isEmpty { text += "?" + mask }
        return text
    }

    /// A segment safe to show: a lower-case word or words, or an API version.
    static func isPlainWord(_ segment: Substring) -> Bool {
        if segment.first == "v", (2...4).contains(segment.count), segment.dropFirst().allSatisfy(\.isASCIIDigit) {
            return true
        }
        guard segment.count <= 64 else { return false }
        var run = 0
        for character in segment {
            switch character {
            case "a"..."z":
                run += 1
                if run > 16 { return false }
            case "-", "_", ".":
                run = 0
            default:
                return false
            }
        }
        return true
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
