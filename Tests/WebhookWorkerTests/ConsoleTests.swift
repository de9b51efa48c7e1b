import Foundation
import JobQueue
import LibPQ
import Logging
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookWorkerSchema

@testable import webhook_worker

/// The web console's security (tokens, sessions, CSRF, read-only, escaping, headers) and the
/// library methods it reads through, against a real PostgreSQL.
@Suite("Web console", .timeLimit(.minutes(4)))
struct ConsoleTests {
    static let aliceSecret = "alice-secret-0123456789"
    static let tokens = try! ConsoleTokens("alice:\(aliceSecret),bob:bob-secret-abcdefghijkl")

    // MARK: tokens, sessions, CSRF

    @Test("WORKER_CONSOLE_TOKEN: name:secret pairs, a bare secret is operator, bad values are refused")
    func tokenParsing() throws {
        #expect(Self.tokens.tokens.map(\.name) == ["alice", "bob"])
        #expect(try ConsoleTokens("just-one-long-secret").tokens.map(\.name) == ["operator"])
        #expect(try ConsoleTokens(nil).isEmpty && ConsoleTokens("  ").isEmpty)
        #expect(Self.tokens.match(Self.aliceSecret)?.name == "alice")
        #expect(Self.tokens.match("alice-secret-012345678") == nil)
        #expect(Self.tokens.match("") == nil)
        for bad in ["alice:short", "a:0123456789abcdef,a:0123456789abcdeg", "bad name:0123456789abcdef", ","] {
            #expect(throws: SettingError.self, "\(bad)") { try ConsoleTokens(bad) }
        }
        // The message names the variable and never the secret.
        do {
            _ = try ConsoleTokens("carol:tooshort")
        } catch let error as SettingError {
            #expect(error.description.contains("WORKER_CONSOLE_TOKEN") && !error.description.contains("tooshort"))
        }
    }

    @Test("session cookies are signed, expire, end when their token changes; CSRF tokens belong to one session")
    func sessions() throws {
        let sessions = ConsoleSessions(tokens: Self.tokens)
        let issued = try #require(sessions.issue(actor: "alice"))
        let identity = try #require(sessions.verify(issued.value))
        #expect(identity.actor == "alice" && identity.method == .session(nonce: issued.nonce))
        #expect(sessions.issue(actor: "mallory") == nil)

        // Any change to the value breaks the signature: another name, a later expiry, another MAC.
        var parts = issued.value.split(separator: ".").map(String.init)
        parts[1] = "bob"
        #expect(sessions.verify(parts.joined(separator: ".")) == nil)
        parts = issued.value.split(separator: ".").map(String.init)
        parts[2] = String(Int(parts[2])! + 3600)
        #expect(sessions.verify(parts.joined(separator: ".")) == nil)
        #expect(sessions.verify(String(issued.value.dropLast()) + "0") == nil || issued.value.hasSuffix("0"))
        #expect(sessions.verify("garbage") == nil)
        #expect(sessions.verify(issued.value, now: Date().addingTimeInterval(ConsoleSessions.lifetime + 1)) == nil)

        // Another secret for alice: her old sessions end.
        let rotated = ConsoleSessions(tokens: try ConsoleTokens("alice:another-secret-0123456789"))
        #expect(rotated.verify(issued.value) == nil)

        let csrf = try #require(sessions.csrfToken(actor: "alice", nonce: issued.nonce))
        #expect(sessions.checkCSRF(csrf, for: identity))
        #expect(!sessions.checkCSRF(nil, for: identity))
        #expect(!sessions.checkCSRF("", for: identity))
        let other = try #require(sessions.issue(actor: "alice"))
        #expect(!sessions.checkCSRF(csrf, for: try #require(sessions.verify(other.value))))
        #expect(sessions.checkCSRF(nil, for: ConsoleIdentity(actor: "alice", method: .bearer)))
        #expect(constantTimeEqual("abc", "abc") && !constantTimeEqual("abc", "abd") && !constantTimeEqual("ab", "abc"))
    }

    @Test("the HTML builder escapes text and attribute values")
    func escaping() {
        var h = HTML()
        h.element(
            "a", ["href": "/x?a=\"><script>alert(1)</script>", "title": nil], text: "<script>alert('x')</script> & co")
        #expect(
            h.output
                == "<a href=\"/x?a=&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\">"
                + "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co</a>")
        #expect(FormEncoding.decode("a=1+2%26&b=%3Cx%3E&a=ignored&c") == ["a": "1 2&", "b": "<x>", "c": ""])
        #expect(FormEncoding.cookies(["a=1; b=2", "a=3"]) == ["a": "1", "b": "2"])
        #expect(ConsoleServer.isLoopback("127.0.0.1") && ConsoleServer.isLoopback("::1"))
        #expect(ConsoleServer.isLoopback("localhost") && ConsoleServer.isLoopback("127.1.2.3"))
        #expect(!ConsoleServer.isLoopback("0.0.0.0") && !ConsoleServer.isLoopback("10.0.0.1"))
        #expect(!ConsoleServer.isLoopback("127.0.0.1.evil.example"))
    }

    @Test("a non-loopback console needs WORKER_CONSOLE_TOKEN; bad ports are refused")
    func consoleSettings() throws {
        #expect(throws: SettingError.self) {
            try ConsoleCommand.parse(["--host", "0.0.0.0"]).settings(environment: [:])
        }
        let withToken = try ConsoleCommand.parse(["--host", "0.0.0.0"]).settings(
            environment: ["WORKER_CONSOLE_TOKEN": Self.aliceSecret])
        #expect(withToken.tokens.tokens.map(\.name) == ["operator"] && withToken.port == 8090)
        let local = try ConsoleCommand.parse([]).settings(
            environment: ["WORKER_CONSOLE_PORT": "9001", "WORKER_CONSOLE_READ_ONLY": "1"])
        #expect(local.host == "127.0.0.1" && local.port == 9001 && local.readOnly && local.tokens.isEmpty)
        #expect(throws: SettingError.self) { try ConsoleCommand.parse(["--port", "70000"]).settings(environment: [:]) }
        #expect(throws: SettingError.self) {
            try RunCommand.parse(["--console"]).settings(environment: [:])
        }
        #expect(throws: SettingError.self) {
            try RunCommand.parse(["--console", "--http-port", "9090"]).settings(environment: [:])
        }
        let run = try RunCommand.parse(["--console", "--http-port", "9090", "--http-host", "127.0.0.1"]).settings(
            environment: [:])
        #expect(run.console?.port == 9090 && run.console?.tokens.isEmpty == true)
    }

    // MARK: the console against a real database

    /// A console on a fresh database with the web app's tables, one client and one delivery whose
    /// stored body and client name try to inject markup.
    static func withConsole(
        tokens: ConsoleTokens = ConsoleTests.tokens, readOnly: Bool = false,
        _ body: (Console, TestDatabase, UUID) async throws -> Void
    ) async throws {
        try await withTestDatabase(appTables: true) { database in
            let id = UUID()
            try await database.query(
                """
                INSERT INTO "OAuthClient" (id, "clientId", name, "webhookUrl", "webhookSecret")
                VALUES ('client-1', 'acme-public', '<script>alert("name")</script>',
                        'https://user:pw@example.com/hook?token=abc', 'whsec_do_not_show')
                """)
            try await database.query(
                """
                INSERT INTO webhook_worker.webhook_deliveries (delivery_id, event, source_job_id,
                    integration_account_id, user_id, oauth_client_id, payload, status, attempts, last_http_status,
                    last_error)
                VALUES ($1, 'integration.connected', 1, 'acct-1', 'user-1', 'client-1',
                        '{"x":"<script>alert(1)</script>"}', 'failed', 1, 500, 'HTTP 500')
                """, [id])
            try await database.query(
                """
                INSERT INTO webhook_worker.delivery_attempts (delivery_id, attempt, url, http_status, error_class,
                    error, duration_ms, response_excerpt)
                VALUES ($1, 1, 'https://example.com/hook?token=***', NULL, 'timeout', 'timed out', 15000,
                        '<img src=x onerror=alert(2)>')
                """, [id])
            let pool = database.pool(size: 2)
            try await withTeardown {
                let console = Console(
                    database: pool, tokens: tokens, readOnly: readOnly, logger: Logger(label: "console-test"))
                try await body(console, database, id)
            } teardown: {
                await pool.close()
            }
        }
    }

    static func get(
        _ path: String, bearer: String? = ConsoleTests.aliceSecret, query: [String: String] = [:]
    )
        -> ConsoleRequest
    {
        ConsoleRequest(method: "GET", path: path, query: query, authorization: bearer.map { "Bearer \($0)" })
    }

    @Test("pages need a token, carry the security headers, and escape what the database holds")
    func pages() async throws {
        try await Self.withConsole { console, _, id in
            let wrong = await console.respond(Self.get("/console", bearer: "not-the-token-at-all"))
            #expect(wrong.status == 401)
            let anonymous = await console.respond(Self.get("/console", bearer: nil))
            #expect(anonymous.status == 303 && anonymous.header("Location") == "/console/login")

            let page = await console.respond(Self.get("/console/deliveries/\(id.uuidString)"))
            #expect(page.status == 200)
            #expect(page.header("X-Frame-Options") == "DENY" && page.header("Cache-Control") == "no-store")
            let policy = try #require(page.header("Content-Security-Policy"))
            #expect(!policy.contains("unsafe-inline") && policy.contains("default-src 'none'"))
            #expect(!page.body.contains("<script") && !page.body.contains("<img"))
            #expect(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
            #expect(page.body.contains("&lt;img src=x onerror=alert(2)&gt;"))
            #expect(page.body.contains("timeout") && page.body.contains("acme-public"))
            #expect(page.body.contains("Not delivered"))

            // Search by the public clientId finds it; the endpoints page redacts the URL and shows no secret.
            let search = await console.respond(Self.get("/console/deliveries", query: ["client": "acme-public"]))
            #expect(search.body.contains(id.uuidString.lowercased()))
            let none = await console.respond(Self.get("/console/deliveries", query: ["client": "someone-else"]))
            #expect(!none.body.contains(id.uuidString.lowercased()) && none.body.contains("No delivery matches"))
            let endpoints = await console.respond(Self.get("/console/endpoints"))
            #expect(endpoints.status == 200 && endpoints.body.contains("https://***@example.com/hook?***"))
            #expect(!endpoints.body.contains("whsec_do_not_show") && !endpoints.body.contains(":pw@"))
            #expect(!endpoints.body.contains(Self.aliceSecret))

            for path in ["/console", "/console/dead-letters", "/console/jobs", "/console/audit"] {
                let response = await console.respond(Self.get(path))
                #expect(response.status == 200, "\(path)")
                #expect(!response.body.contains("<script"), "\(path)")
            }
            #expect(await console.respond(Self.get("/console/deliveries", query: ["id": "nope"])).status == 400)
            #expect(await console.respond(Self.get("/console/nowhere")).status == 404)
        }
    }

    @Test("login sets a strict HttpOnly session; POSTs need its CSRF token; every action is audited")
    func actions() async throws {
        try await Self.withConsole { console, database, id in
            let refused = await console.respond(
                ConsoleRequest(method: "POST", path: "/console/login", form: ["token": "wrong-token-wrong-token"]))
            #expect(refused.status == 401 && refused.header("Set-Cookie") == nil)
            let login = await console.respond(
                ConsoleRequest(method: "POST", path: "/console/login", form: ["token": Self.aliceSecret]))
            #expect(login.status == 303)
            let setCookie = try #require(login.header("Set-Cookie"))
            #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict"))
            #expect(!setCookie.contains(Self.aliceSecret))
            let cookie = String(setCookie.split(separator: ";")[0].split(separator: "=", maxSplits: 1)[1])

            var page = ConsoleRequest(method: "GET", path: "/console/deliveries/\(id.uuidString.lowercased())")
            page.cookies = [ConsoleSessions.cookieName: cookie]
            let rendered = await console.respond(page)
            #expect(rendered.status == 200 && rendered.body.contains("Resend"))
            let csrf = try #require(
                rendered.body.firstMatch(of: /name="csrf" value="([0-9a-f]+)"/).map { String($0.output.1) })

            // A forged form (the cookie, no CSRF token) is refused and audited as refused.
            let path = "/console/deliveries/\(id.uuidString.lowercased())/resend"
            var forged = ConsoleRequest(method: "POST", path: path, form: ["back": "/console"])
            forged.cookies = [ConsoleSessions.cookieName: cookie]
            #expect(await console.respond(forged).status == 403)
            forged.form["csrf"] = String(csrf.reversed())
            #expect(await console.respond(forged).status == 403)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 0)

            var real = forged
            real.form = ["csrf": csrf, "back": "https://evil.example/"]
            let done = await console.respond(real)
            var crossSite = real
            crossSite.crossSite = true
            #expect(await console.respond(crossSite).status == 403, "Sec-Fetch-Site: cross-site")
            #expect(done.status == 303)
            #expect(done.header("Location") == "/console/deliveries/\(id.uuidString.lowercased())")
            #expect(
                try await database.count("SELECT count(*) FROM webhook_worker.jobs WHERE kind = 'webhook.deliver'") == 1
            )
            let flash = try #require(done.header("Set-Cookie"))
            #expect(flash.hasPrefix("\(Console.flashCookie)="))

            // The next page shows the flash once.
            var after = page
            after.cookies[Console.flashCookie] = String(
                flash.split(separator: ";")[0].dropFirst(Console.flashCookie.count + 1))
            #expect(await console.respond(after).body.contains("again as job"))

            let entries = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(entries.count == 6)
            #expect(entries[0].actor == "anonymous" && entries[0].outcome == "refused: sent from another site")
            #expect(entries[1].actor == "alice" && entries[1].action == "delivery.resend" && entries[1].outcome == "ok")
            #expect(entries[1].target == "delivery:\(id.uuidString.lowercased())")
            #expect(entries[2].outcome.hasPrefix("refused") && entries[3].outcome.hasPrefix("refused"))
            #expect(entries[4].action == "console.sign_in" && entries[4].outcome == "ok")
            #expect(entries[5].action == "console.sign_in" && entries[5].outcome == "refused: wrong token")

            // Bearer requests need no CSRF token (a browser never sends the header by itself).
            let pause = await console.respond(
                ConsoleRequest(
                    method: "POST", path: "/console/jobs/pause", form: ["kind": "noop"],
                    authorization: "Bearer bob-secret-abcdefghijkl"))
            #expect(pause.status == 303)
            let paused = try await database.withConnection {
                try await PausedKinds($0, schema: WebhookWorkerSchema.queue).list()
            }
            #expect(paused.map(\.kind) == ["noop"] && paused.first?.pausedBy == "console:bob")
        }
    }

    static func post(_ path: String, _ form: [String: String]) -> ConsoleRequest {
        ConsoleRequest(method: "POST", path: path, form: form, authorization: "Bearer \(aliceSecret)")
    }

    @Test("actions: retry dead letters matching a filter, purge, cancel a delivery, disable an endpoint")
    func moreActions() async throws {
        try await Self.withConsole { console, database, id in
            // Dead letters of two reasons, one of them client-1's delivery; one died 40 days ago.
            try await database.query(
                """
                INSERT INTO webhook_worker.dead_letter_jobs (job_id, kind, payload, priority, attempts, max_attempts,
                    reason, created_at, dead_at)
                SELECT n, 'webhook.deliver', CASE WHEN n = 1 THEN jsonb_build_object('delivery_id', $1::text)
                                                  ELSE '{}'::jsonb END,
                       0, 1, 1, CASE WHEN n <= 2 THEN 'permanent_failure' ELSE 'attempts_exhausted' END, now(),
                       CASE WHEN n = 5 THEN now() - interval '40 days' ELSE now() END
                FROM generate_series(1, 5) n
                """, [id.uuidString.lowercased()])
            let listed = await console.respond(Self.get("/console/dead-letters", query: ["client": "acme-public"]))
            #expect(listed.body.matches(of: /dead-letters\/[0-9]+\/retry"/).count == 1, "one row, one retry form")

            let byReason = await console.respond(
                Self.post(
                    "/console/dead-letters/retry", ["reason": "attempts_exhausted", "back": "/console/dead-letters"]))
            #expect(byReason.status == 303 && byReason.header("Location") == "/console/dead-letters")
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 3)
            let byClient = await console.respond(Self.post("/console/dead-letters/retry", ["client": "acme-public"]))
            #expect(byClient.status == 303)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 4)

            // The old one was requeued above: the page lists it, and Purge deletes it, with "include requeued".
            let purge = await console.respond(
                Self.post("/console/dead-letters/purge", ["older_than": "30d", "include_requeued": "1"]))
            #expect(purge.status == 303)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.dead_letter_jobs") == 4)
            let badAge = await console.respond(Self.post("/console/dead-letters/purge", ["older_than": "soon"]))
            #expect(badAge.status == 303)

            // The delivery is pending again (requeued); cancel it; then disable its endpoint by public id.
            try await database.query(
                "UPDATE webhook_worker.webhook_deliveries SET status = 'pending' WHERE delivery_id = $1", [id])
            #expect(await console.respond(Self.post("/console/deliveries/\(id.uuidString)/cancel", [:])).status == 303)
            let status = try await database.scalar(
                "SELECT status FROM webhook_worker.webhook_deliveries WHERE delivery_id = $1", [id], as: String.self)
            #expect(status == "cancelled")
            #expect(
                await console.respond(Self.post("/console/endpoints/disable", ["endpoint": "acme-public"])).status
                    == 303)
            let state = try await database.scalar(
                "SELECT state FROM webhook_worker.endpoints WHERE key = 'client:client-1'", as: String.self)
            #expect(state == "disabled")

            let audit = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(
                audit.map(\.action).reversed() == [
                    "dead_letter.retry_all", "dead_letter.retry_all", "dead_letter.purge",
                    "POST /console/dead-letters/purge",
                    "delivery.cancel", "endpoint.disable",
                ])
            #expect(audit.first { $0.action == "dead_letter.purge" }?.detail.contains("\"deleted\": \"1\"") == true)
            #expect(audit.first { $0.action.hasPrefix("POST") }?.outcome.hasPrefix("failed: give an age") == true)
            #expect(audit.allSatisfy { $0.actor == "alice" })
        }
    }

    @Test("read-only mode renders no action and refuses every POST with 403")
    func readOnly() async throws {
        try await Self.withConsole(readOnly: true) { console, database, id in
            let page = await console.respond(Self.get("/console/deliveries/\(id.uuidString)"))
            #expect(page.status == 200 && !page.body.contains("method=\"post\"") && page.body.contains("read-only"))
            let endpoints = await console.respond(Self.get("/console/endpoints"))
            #expect(!endpoints.body.contains("Disable"))
            let post = await console.respond(
                ConsoleRequest(
                    method: "POST", path: "/console/jobs/pause", form: ["kind": "noop"],
                    authorization: "Bearer \(Self.aliceSecret)"))
            #expect(post.status == 403)
            let paused = try await database.count("SELECT count(*) FROM webhook_worker.paused_kinds")
            #expect(paused == 0)
            let entries = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(entries.first?.outcome == "refused: read-only")
        }
    }

    @Test("without tokens: the local actor, and still a CSRF token on every POST")
    func noTokens() async throws {
        try await Self.withConsole(tokens: try ConsoleTokens(nil)) { console, database, _ in
            let first = await console.respond(Self.get("/console/jobs", bearer: nil))
            #expect(first.status == 200 && first.body.contains("signed in as local"))
            let setCookie = try #require(first.header("Set-Cookie"))
            let post = await console.respond(
                ConsoleRequest(method: "POST", path: "/console/jobs/pause", form: ["kind": "noop"]))
            #expect(post.status == 403)
            let cookie = String(setCookie.split(separator: ";")[0].split(separator: "=", maxSplits: 1)[1])
            let csrf = try #require(
                first.body.firstMatch(of: /name="csrf" value="([0-9a-f]+)"/).map { String($0.output.1) })
            var real = ConsoleRequest(
                method: "POST", path: "/console/jobs/pause", form: ["kind": "noop", "csrf": csrf])
            real.cookies = [ConsoleSessions.cookieName: cookie]
            #expect(await console.respond(real).status == 303)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.paused_kinds") == 1)
        }
    }

}
