import Foundation

/// A request as the console sees it, whichever server received it.
struct ConsoleRequest: Sendable {
    var method: String
    /// The path without the query, e.g. `/console/deliveries`.
    var path: String
    var query: [String: String] = [:]
    /// The `application/x-www-form-urlencoded` fields of a POST.
    var form: [String: String] = [:]
    var authorization: String?
    var cookies: [String: String] = [:]
    /// `X-Forwarded-Proto: https` (a TLS proxy in front): cookies get `Secure`.
    var forwardedHTTPS = false
    /// `Sec-Fetch-Site: cross-site`: a browser says another site made this request; POSTs are
    /// refused (besides the CSRF token, and for the login form, which has none).
    var crossSite = false
    /// The `Host` header (HTTP/2's `:authority`), checked by ``ConsoleHosts``; nil when absent.
    var host: String?
    /// The `Origin` header of a POST, when the browser sent one.
    var origin: String?

    /// The first field name or value, of the form or the query, that holds a control character
    /// (Unicode's Cc: U+0000-001F, U+007F-009F). The console's forms have single-line fields only,
    /// which browsers send without any, so one is an attack or garbage; a NUL would also be cut by
    /// libpq and refused by `jsonb`. (A textarea, if one is ever added, would need CR, LF and tab.)
    var fieldWithControlCharacter: String? {
        for (name, value) in query.merging(form, uniquingKeysWith: { $1 })
        where Self.hasControlCharacter(name) || Self.hasControlCharacter(value) {
            return ConsoleRequest.printable(name)
        }
        return nil
    }

    static func hasControlCharacter(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// `text` with each control character as U+FFFD and at most `limit` characters: safe to log
    /// (no forged line) and to store (no NUL).
    static func printable(_ text: String, limit: Int = 100) -> String {
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars.prefix(limit) {
            scalars.append(scalar.properties.generalCategory == .control ? "\u{FFFD}" : scalar)
        }
        return String(scalars)
    }

    /// Trimmed, nil when empty.
    func field(_ name: String) -> String? {
        guard
            let value = (method == "POST" ? form[name] : query[name])?.trimmingCharacters(in: .whitespacesAndNewlines),
            !value.isEmpty
        else { return nil }
        return value
    }
}

/// What the console answers; the server adds the security headers of ``ConsoleResponse/securityHeaders``.
struct ConsoleResponse: Sendable {
    var status: Int
    var headers: [(String, String)] = []
    var body: String = ""

    static func html(_ body: String) -> ConsoleResponse { html(200, body) }

    static func html(_ status: Int, _ body: String) -> ConsoleResponse {
        ConsoleResponse(status: status, headers: [("Content-Type", "text/html; charset=utf-8")], body: body)
    }

    static func text(_ status: Int, _ body: String) -> ConsoleResponse {
        ConsoleResponse(status: status, headers: [("Content-Type", "text/plain; charset=utf-8")], body: body + "\n")
    }

    /// 303 See Other: after a POST, the browser GETs `location`.
    static func seeOther(_ location: String) -> ConsoleResponse {
        ConsoleResponse(status: 303, headers: [("Location", location)])
    }

    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }

    /// On every answer: no script at all, no framing, nothing cached, no sniffing, no referrer.
    static let securityHeaders: [(String, String)] = [
        (
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                + "base-uri 'none'"
        ),
        ("X-Frame-Options", "DENY"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        // Not no-referrer: under it a browser sends `Origin: null` even with its own forms' POSTs,
        // which the Origin check refuses. same-origin keeps the page's URL from other sites and
        // lets the console's own forms name their origin (another site's POST gets `null`).
        ("Referrer-Policy", "same-origin"),
    ]
}

/// `application/x-www-form-urlencoded` (forms and query strings): `+` is a space, `%XX` a byte.
enum FormEncoding {
    static func decode(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = unescape(parts[0]) else { continue }
            let value = parts.count > 1 ? unescape(parts[1]) ?? "" : ""
            if fields[name] == nil { fields[name] = value }
        }
        return fields
    }

    private static func unescape(_ text: Substring) -> String? {
        String(text).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    static func encode(_ fields: [(String, String?)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return fields.compactMap { name, value in
            guard let value, !value.isEmpty else { return nil }
            return "\(name)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
        }.joined(separator: "&")
    }

    /// `Cookie:` header values as a dictionary (the first of a name wins).
    static func cookies(_ headers: [String]) -> [String: String] {
        var cookies: [String: String] = [:]
        for header in headers {
            for part in header.split(separator: ";") {
                let pieces = part.split(separator: "=", maxSplits: 1)
                guard pieces.count == 2 else { continue }
                let name = pieces[0].trimmingCharacters(in: .whitespaces)
                if cookies[name] == nil { cookies[name] = pieces[1].trimmingCharacters(in: .whitespaces) }
            }
        }
        return cookies
    }
}

/// A bad value in a form or a query: shown to the operator, never a crash.
struct ConsoleInputError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// The one-line message shown once after an action (carried by a short-lived cookie, so it is
/// never part of a URL someone could craft).
struct Flash: Equatable {
    let ok: Bool
    let message: String

    init(ok: Bool, message: String) {
        self.ok = ok
        self.message = message
    }

    var cookieValue: String {
        Data(((ok ? "ok|" : "error|") + String(message.prefix(1000))).utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    init?(cookieValue: String) {
        var base64 = cookieValue.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8),
            let bar = text.firstIndex(of: "|")
        else { return nil }
        ok = text[..<bar] == "ok"
        message = String(text[text.index(after: bar)...])
    }
}
