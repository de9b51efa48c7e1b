import Foundation
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery

@testable import webhook_worker

/// The endpoints page's limits: shown, set by a POST with the CSRF token, refused read-only, audited.
extension ConsoleTests {
    static func endpointLimits(_ database: TestDatabase) async throws -> (max: Int?, rate: Double?, queue: Int?) {
        let row = try await database.query(
            """
            SELECT e.max_in_flight, e.rate_limit,
                   (SELECT max_running FROM webhook_worker.concurrency_key_limits
                    WHERE kind = 'webhook.deliver' AND concurrency_key = e.key) AS queue
            FROM webhook_worker.endpoints e WHERE e.key = 'client:client-1'
            """
        ).first
        return (
            try row?.decodeIfPresent("max_in_flight"), try row?.decodeIfPresent("rate_limit"),
            try row?.decodeIfPresent("queue")
        )
    }

    @Test("the endpoints page shows an endpoint's limits and sets them; bad values change nothing; all audited")
    func endpointLimitsAction() async throws {
        try await Self.withConsole { console, database, _ in
            let before = await console.respond(Self.get("/console/endpoints"))
            #expect(before.status == 200)
            #expect(before.body.contains("max in flight adaptive, rate none"))
            #expect(before.body.contains("action=\"/console/endpoints/limits\""))

            let set = await console.respond(
                Self.post(
                    "/console/endpoints/limits",
                    ["endpoint": "acme-public", "max_in_flight": "3", "rate_limit": "0.5"]))
            #expect(set.status == 303 && set.header("Location") == "/console/endpoints")
            var now = try await Self.endpointLimits(database)
            #expect(now.max == 3 && now.rate == 0.5 && now.queue == 3, "\(now)")
            let after = await console.respond(Self.get("/console/endpoints"))
            #expect(after.body.contains("max in flight 3, rate 0.5/s"))
            #expect(after.body.contains("name=\"max_in_flight\" value=\"3\""))

            for (field, value) in [("max_in_flight", "0"), ("rate_limit", "-1"), ("rate_limit", "fast")] {
                let bad = await console.respond(
                    Self.post("/console/endpoints/limits", ["endpoint": "client-1", field: value]))
                #expect(bad.status == 303)
                now = try await Self.endpointLimits(database)
                #expect(now.max == 3 && now.rate == 0.5, "after \(field)=\(value): \(now)")
            }
            // Blank fields: adaptive, and no rate limit.
            let cleared = await console.respond(Self.post("/console/endpoints/limits", ["endpoint": "client-1"]))
            #expect(cleared.status == 303)
            now = try await Self.endpointLimits(database)
            #expect(now.max == nil && now.rate == nil && now.queue == nil, "\(now)")

            let audit = try await database.withConnection { try await AuditLog($0).recent() }.reversed()
            #expect(audit.map(\.action).filter { $0 == "endpoint.set_limits" }.count == 2)
            let first = try #require(audit.first { $0.action == "endpoint.set_limits" })
            #expect(first.actor == "alice" && first.target == "endpoint:client:client-1" && first.outcome == "ok")
            #expect(
                first.detail.contains("\"max_in_flight\": \"3\"") && first.detail.contains("\"rate_limit\": \"0.5\""))
            let refused = audit.filter { $0.action == "POST /console/endpoints/limits" }
            #expect(refused.count == 3)
            #expect(refused.first?.outcome.hasPrefix("failed: Not set: max in flight '0'") == true)
        }
    }

    @Test("a read-only console shows the limits without the form and refuses to set them")
    func endpointLimitsReadOnly() async throws {
        try await Self.withConsole(readOnly: true) { console, database, _ in
            let page = await console.respond(Self.get("/console/endpoints"))
            #expect(page.body.contains("max in flight adaptive, rate none"))
            #expect(!page.body.contains("/console/endpoints/limits"))
            let post = await console.respond(
                Self.post("/console/endpoints/limits", ["endpoint": "client-1", "max_in_flight": "1"]))
            #expect(post.status == 403)
            let now = try await Self.endpointLimits(database)
            #expect(now.max == nil)
        }
    }

    @Test("a session's POST to set limits needs the CSRF token")
    func endpointLimitsCSRF() async throws {
        try await Self.withConsole(tokens: try ConsoleTokens(nil)) { console, database, _ in
            let first = await console.respond(Self.get("/console/endpoints", bearer: nil))
            let setCookie = try #require(first.header("Set-Cookie"))
            let cookie = String(setCookie.split(separator: ";")[0].split(separator: "=", maxSplits: 1)[1])
            var forged = ConsoleRequest(
                method: "POST", path: "/console/endpoints/limits", form: ["endpoint": "client-1", "max_in_flight": "1"])
            forged.cookies = [ConsoleSessions.cookieName: cookie]
            #expect(await console.respond(forged).status == 403)
            #expect(try await Self.endpointLimits(database).max == nil)
            let csrf = try #require(
                first.body.firstMatch(of: /name="csrf" value="([0-9a-f]+)"/).map { String($0.output.1) })
            var real = forged
            real.form["csrf"] = csrf
            #expect(await console.respond(real).status == 303)
            #expect(try await Self.endpointLimits(database).max == 1)
        }
    }
}
