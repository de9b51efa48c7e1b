import AsyncHTTPClient
import Foundation
import JobQueue
import LibPQ
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookWorkerSchema

@testable import webhook_worker

/// The console's defences that issue 20 found missing: the Host check (DNS rebinding), token
/// names with a dot, control characters in forms, the purge's filters, signing out, the audit of
/// sign-ins and refusals, and the database timeouts of `webhook-worker console`.
extension ConsoleTests {
    /// An answer over real HTTP.
    struct Answer {
        let status: Int
        let headers: HTTPHeaders
        let body: String
    }

    /// Serves `console` with Hummingbird on 127.0.0.1 (a port of its own) while `body` runs.
    static func serving(_ console: Console, _ body: @Sendable (_ port: Int) async throws -> Void) async throws {
        let (ports, listening) = AsyncStream.makeStream(of: Int.self)
        let server = ConsoleServer.make(
            console: console, host: "127.0.0.1", port: 0, logger: Logger(label: "console-test")
        ) { listening.yield($0) }
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: server)], logger: Logger(label: "console-test")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw TestFailure(message: "the console never listened") }
            do {
                try await body(port)
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    /// A client that returns redirects rather than following them (a 303 is what an action answers).
    static let client = HTTPClient(
        eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))

    /// One request to 127.0.0.1:`port` with the `Host` header a browser would send for `host`.
    static func request(
        _ port: Int, _ path: String, host: String, method: HTTPMethod = .GET, form: String? = nil,
        headers: [(String, String)] = [], timeout: Duration = .seconds(30)
    ) async throws -> Answer {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = method
        request.headers.replaceOrAdd(name: "Host", value: host)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let form {
            request.headers.replaceOrAdd(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: form))
        }
        let response = try await client.execute(request, timeout: .seconds(timeout.components.seconds))
        let body = try await response.body.collect(upTo: 1 << 22)
        return Answer(status: Int(response.status.code), headers: response.headers, body: String(buffer: body))
    }

    static func cookie(_ setCookie: String?) -> String? {
        setCookie.map { String($0.split(separator: ";")[0].split(separator: "=", maxSplits: 1)[1]) }
    }

    static func csrf(_ body: String) -> String? {
        body.firstMatch(of: /name="csrf" value="([0-9a-f]+)"/).map { String($0.output.1) }
    }

    // MARK: 1. the Host check

    @Test("DNS rebinding: only loopback names answer a console without tokens; other Hosts get 421")
    func hostCheck() async throws {
        try await Self.withConsole(tokens: try ConsoleTokens(nil)) { console, database, _ in
            try await Self.serving(console) { port in
                for host in ["evil.test:\(port)", "evil.test", "127.0.0.1.evil.test:\(port)", "localhost.evil.test"] {
                    let answer = try await Self.request(port, "/console/dead-letters", host: host)
                    #expect(answer.status == 421, "\(host)")
                    #expect(answer.headers["Set-Cookie"].isEmpty, "\(host): no session for another name")
                    #expect(Self.csrf(answer.body) == nil && answer.body.count < 200, "\(host)")
                }
                for host in ["127.0.0.1:\(port)", "localhost:\(port)", "LOCALHOST", "[::1]:\(port)", "127.0.0.1"] {
                    let answer = try await Self.request(port, "/console/dead-letters", host: host)
                    #expect(answer.status == 200, "\(host)")
                }
                // A rebinding page's POST is refused before it acts, and the refusal is audited.
                let post = try await Self.request(
                    port, "/console/jobs/pause", host: "evil.test:\(port)", method: .POST, form: "kind=noop")
                #expect(post.status == 421)
            }
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.paused_kinds") == 0)
            let entries = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(entries.map(\.outcome) == ["refused: Host not allowed"])
        }
    }

    @Test("a name listed with --allowed-host answers; a POST whose Origin names another host is refused")
    func allowedHostsAndOrigin() async throws {
        let hosts = try ConsoleSettings.hosts(
            bound: "127.0.0.1", flags: ["console.example.com"], environment: [:])
        try await Self.withConsole(tokens: try ConsoleTokens(nil)) { console, database, _ in
            let listed = Console(
                database: console.database, tokens: try ConsoleTokens(nil), hosts: hosts, readOnly: false,
                logger: Logger(label: "console-test"))
            try await Self.serving(listed) { port in
                let page = try await Self.request(port, "/console/jobs", host: "Console.Example.COM:443")
                #expect(page.status == 200)
                let cookie = try #require(Self.cookie(page.headers["Set-Cookie"].first))
                let csrf = try #require(Self.csrf(page.body))
                #expect(try await Self.request(port, "/console/jobs", host: "other.example.com").status == 421)

                func pause(origin: String) async throws -> Int {
                    try await Self.request(
                        port, "/console/jobs/pause", host: "console.example.com", method: .POST,
                        form: "kind=noop&csrf=\(csrf)",
                        headers: [("Cookie", "\(ConsoleSessions.cookieName)=\(cookie)"), ("Origin", origin)]
                    ).status
                }
                #expect(try await pause(origin: "https://evil.example") == 403)
                #expect(try await pause(origin: "null") == 403)
                #expect(try await database.count("SELECT count(*) FROM webhook_worker.paused_kinds") == 0)
                #expect(try await pause(origin: "https://console.example.com") == 303)
                #expect(try await database.count("SELECT count(*) FROM webhook_worker.paused_kinds") == 1)
            }
        }
    }

    @Test("ConsoleHosts: names, ports, IPv6, the bound address; --allowed-host and WORKER_CONSOLE_ALLOWED_HOSTS")
    func hostNames() throws {
        let loopback = ConsoleHosts()
        for host in ["localhost", "localhost:8090", "127.0.0.1", "127.0.0.1:1", "127.9.8.7", "[::1]", "[::1]:8090"] {
            #expect(loopback.allows(host: host), "\(host)")
        }
        for host in [
            "evil.test", "localhost.evil.test", "127.0.0.1.nip.io", "", "[::1", "[::1]x", "localhost:", "a b",
            "localhost:80:80", "user@localhost", "localhost:99999a", "0.0.0.0",
        ] {
            #expect(!loopback.allows(host: host), "\(host)")
        }
        #expect(loopback.allows(host: nil), "no Host: not a browser")
        #expect(ConsoleHosts(bound: "10.1.2.3").allows(host: "10.1.2.3:8090"))
        #expect(!ConsoleHosts(bound: "0.0.0.0").allows(host: "0.0.0.0:8090"))
        #expect(loopback.allows(origin: "http://localhost:8090") && !loopback.allows(origin: "null"))
        #expect(!loopback.allows(origin: "https://evil.test") && !loopback.allows(origin: "localhost"))

        let settings = try ConsoleCommand.parse(["--allowed-host", "a.example", "--allowed-host", "B.example."])
            .settings(environment: ["WORKER_CONSOLE_ALLOWED_HOSTS": " c.example , [fd00::1]"])
        #expect(settings.hosts.allowed == ["a.example", "b.example", "c.example", "fd00::1", "127.0.0.1"])
        #expect(settings.hosts.allows(host: "c.example:8443") && settings.hosts.allows(host: "[fd00::1]:80"))
        for bad in [["--allowed-host", "a.example:8443"], ["--allowed-host", "http://a.example"]] {
            #expect(throws: SettingError.self, "\(bad)") { try ConsoleCommand.parse(bad).settings(environment: [:]) }
        }
        #expect(throws: SettingError.self) {
            try ConsoleCommand.parse([]).settings(environment: ["WORKER_CONSOLE_ALLOWED_HOSTS": "a b"])
        }
        let run = try RunCommand.parse(["--console", "--http-port", "9090", "--http-host", "127.0.0.1"]).settings(
            environment: ["WORKER_CONSOLE_ALLOWED_HOSTS": "ops.example"])
        #expect(run.console?.hosts.allows(host: "ops.example") == true)
    }

    // MARK: 4. token names with a dot

    @Test("token names with '.' or '@' keep their session")
    func dottedTokenNames() async throws {
        let tokens = try ConsoleTokens("ops.team:ops-secret-0123456789abc,alice@example.com:alice-secret-0123456789")
        let sessions = ConsoleSessions(tokens: tokens)
        for name in ["ops.team", "alice@example.com"] {
            let issued = try #require(sessions.issue(actor: name))
            let identity = sessions.verify(issued.value)
            #expect(identity == ConsoleIdentity(actor: name, method: .session(nonce: issued.nonce)), "\(name)")
        }
        try await Self.withConsole(tokens: tokens) { console, _, _ in
            let login = await console.respond(
                ConsoleRequest(method: "POST", path: "/console/login", form: ["token": "ops-secret-0123456789abc"]))
            let cookie = try #require(Self.cookie(login.header("Set-Cookie")))
            var page = ConsoleRequest(method: "GET", path: "/console/jobs")
            page.cookies = [ConsoleSessions.cookieName: cookie]
            let answer = await console.respond(page)
            #expect(answer.status == 200 && answer.body.contains("signed in as ops.team"))
        }
    }

    // MARK: 6. control characters

    @Test("a control character in any form or query field is refused with 400 before acting, and audited")
    func controlCharacters() async throws {
        try await Self.withConsole { console, database, _ in
            for form in [["kind": "noop\u{0}evil"], ["kind": "noop\u{1b}[2J"], ["kind": "noop", "x\u{0}": "1"]] {
                let answer = await console.respond(Self.post("/console/jobs/pause", form))
                #expect(answer.status == 400, "\(form.keys.sorted())")
            }
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.paused_kinds") == 0)
            let entries = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(entries.count == 3)
            #expect(entries.allSatisfy { $0.actor == "alice" && $0.outcome == "refused: control character in a field" })
            let search = await console.respond(Self.get("/console/deliveries", query: ["user": "a\u{0}b"]))
            #expect(search.status == 400)
        }
    }

    @Test("an action whose audit row cannot be written does not happen")
    func unauditedActionsDoNotRun() async throws {
        try await Self.withConsole { console, database, id in
            try await database.query(
                """
                CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'the audit table refuses rows'; END $$
                """)
            try await database.query(
                """
                CREATE TRIGGER refuse_audit BEFORE INSERT ON webhook_worker.console_audit
                FOR EACH ROW EXECUTE FUNCTION refuse_audit()
                """)
            let answer = await console.respond(Self.post("/console/jobs/pause", ["kind": "noop"]))
            #expect(answer.status == 500)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.paused_kinds") == 0)
            // A resend, which runs a transaction of its own inside the action's.
            let resend = await console.respond(Self.post("/console/deliveries/\(id.uuidString)/resend", [:]))
            #expect(resend.status == 500)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs") == 0)
            let status = try await database.scalar(
                "SELECT status FROM webhook_worker.webhook_deliveries WHERE delivery_id = $1", [id], as: String.self)
            #expect(status == "failed")
        }
    }

    // MARK: 9. purge, sign-out, audit, timeouts

    @Test("Purge deletes exactly what the page lists: its kind, reason, client and time filters")
    func purgeFollowsTheFilters() async throws {
        try await Self.withConsole { console, database, id in
            // Six old dead letters: 1 is client-1's delivery (permanent_failure), 2-3 permanent_failure,
            // 4-5 attempts_exhausted, 6 of another kind; 7 is recent.
            try await database.query(
                """
                INSERT INTO webhook_worker.dead_letter_jobs (job_id, kind, payload, priority, attempts, max_attempts,
                    reason, created_at, dead_at)
                SELECT n, CASE WHEN n = 6 THEN 'noop' ELSE 'webhook.deliver' END,
                       CASE WHEN n = 1 THEN jsonb_build_object('delivery_id', $1::text) ELSE '{}'::jsonb END,
                       0, 1, 1, CASE WHEN n <= 3 THEN 'permanent_failure' ELSE 'attempts_exhausted' END, now(),
                       CASE WHEN n = 7 THEN now() ELSE now() - interval '40 days' END
                FROM generate_series(1, 7) n
                """, [id.uuidString.lowercased()])
            func remaining() async throws -> [Int64] {
                try await database.withConnection { connection in
                    try await connection.query(
                        PQQuery("", "SELECT job_id FROM webhook_worker.dead_letter_jobs ORDER BY job_id")
                    ).rows.map { try $0.decode("job_id") }
                }
            }
            // The page filtered by reason offers a purge of that reason only.
            let page = await console.respond(
                Self.get("/console/dead-letters", query: ["kind": "webhook.deliver", "reason": "attempts_exhausted"]))
            let purgeForm = try #require(page.body.firstMatch(of: /action="\/console\/dead-letters\/purge".*?<\/form>/))
            #expect(purgeForm.output.contains(#"name="reason" value="attempts_exhausted""#))

            let byReason = await console.respond(
                Self.post(
                    "/console/dead-letters/purge",
                    ["older_than": "30d", "kind": "webhook.deliver", "reason": "attempts_exhausted"]))
            #expect(byReason.status == 303)
            #expect(try await remaining() == [1, 2, 3, 6, 7])
            let byClient = await console.respond(
                Self.post("/console/dead-letters/purge", ["older_than": "30d", "client": "acme-public"]))
            #expect(byClient.status == 303)
            #expect(try await remaining() == [2, 3, 6, 7])
            let audit = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(audit.first?.detail.contains(#""client": "acme-public""#) == true)
            #expect(audit.first?.detail.contains(#""deleted": "1""#) == true)
        }
    }

    @Test("signing out revokes the session on the server; sign-ins, sign-outs and refusals are audited")
    func signOutRevokesAndIsAudited() async throws {
        try await Self.withConsole { console, database, _ in
            let wrong = await console.respond(
                ConsoleRequest(method: "POST", path: "/console/login", form: ["token": "wrong-token-wrong-token"]))
            #expect(wrong.status == 401)
            let login = await console.respond(
                ConsoleRequest(method: "POST", path: "/console/login", form: ["token": Self.aliceSecret]))
            let cookie = try #require(Self.cookie(login.header("Set-Cookie")))
            var page = ConsoleRequest(method: "GET", path: "/console/jobs")
            page.cookies = [ConsoleSessions.cookieName: cookie]
            let signedIn = await console.respond(page)
            #expect(signedIn.status == 200)
            let csrf = try #require(Self.csrf(signedIn.body))

            var logout = ConsoleRequest(method: "POST", path: "/console/logout", form: ["csrf": csrf])
            logout.cookies = page.cookies
            #expect(await console.respond(logout).status == 303)
            // The same cookie, kept by whoever copied it, no longer signs anyone in.
            let after = await console.respond(page)
            #expect(after.status == 303 && after.header("Location") == "/console/login")
            var action = ConsoleRequest(
                method: "POST", path: "/console/jobs/pause", form: ["kind": "noop", "csrf": csrf])
            action.cookies = page.cookies
            #expect(await console.respond(action).status == 401)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.paused_kinds") == 0)

            // A console restarted with the same tokens still refuses it.
            let restarted = Console(
                database: console.database, tokens: Self.tokens, readOnly: false, logger: Logger(label: "console-test"))
            #expect(await restarted.respond(page).status == 303)

            let entries = try await database.withConnection { try await AuditLog($0).recent() }
            #expect(
                entries.reversed().map { "\($0.actor) \($0.action) \($0.outcome)" } == [
                    "anonymous console.sign_in refused: wrong token", "alice console.sign_in ok",
                    "alice console.sign_out ok",
                ])
        }
    }

    @Test(
        "webhook-worker console: a page facing a held lock fails within lock_timeout instead of hanging",
        arguments: ["on", "off"])
    func consoleTimeouts(preparedStatements: String) async throws {
        // off: the timeouts are set per transaction (a transaction pooler), not per session.
        try await withTestDatabase(appTables: true) { database in
            let port = try freeLoopbackPort()
            let console = try startWorker(
                ["console", "--port", "\(port)"],
                environment: ["DATABASE_URL": database.conninfo, "WORKER_PREPARED_STATEMENTS": preparedStatements])
            defer { console.signal(SIGKILL) }
            let host = "127.0.0.1:\(port)"
            #expect(
                await eventually(timeout: .seconds(60)) {
                    (try? await Self.request(port, "/console/jobs", host: host, timeout: .seconds(5)))?.status == 200
                }, "the console answers: \(console.output)")

            let holder = try await database.connect()
            try await holder.execute(
                script: "BEGIN; LOCK TABLE webhook_worker.jobs IN ACCESS EXCLUSIVE MODE", name: "hold")
            let started = ContinuousClock.now
            let answer = try? await Self.request(port, "/console/jobs", host: host, timeout: .seconds(25))
            let waited = ContinuousClock.now - started
            try await holder.execute(script: "ROLLBACK", name: "release")
            await holder.close()
            #expect(answer?.status == 500, "the page fails rather than hangs")
            #expect(waited < .seconds(15), "lock_timeout is 5 s: \(waited)")
        }
    }
}
