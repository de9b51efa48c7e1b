import Foundation
import JobQueue
import LibPQ
import PropertyBased
@testable import TestSupport
import Testing
@testable import WebhookDelivery
@testable import webhook_worker

/// Generators of the awkward inputs the worker reads: job payloads, the web app's rows, settings.
enum Fuzz {
    typealias Gen<T> = Generator<T, Shrink.None<T>>

    /// Pieces that break naive code: separators, quotes, escapes, invisible and combining
    /// characters, right-to-left marks, emoji, JSON-looking text, control characters.
    static let pieces = AwkwardText.pieces

    static func text(pieces count: ClosedRange<Int> = 0...12) -> Gen<String> {
        Gen(run: { rng in
            (0..<Int.random(in: count, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
        })
    }

    /// Arbitrary JSON text, biased toward the keys the handlers look for.
    static let json: Gen<String> = Gen(run: { rng in value(depth: 0, rng: &rng) })

    static func value(depth: Int, rng: inout any SeededRandomNumberGenerator) -> String {
        let keys = ["integration_account_id", "user_id", "delivery_id", "acct-1", "", "x"]
        switch Int.random(in: depth > 2 ? 0...4 : 0...6, using: &rng) {
        case 0: return "null"
        case 1: return Bool.random(using: &rng) ? "true" : "false"
        case 2: return String(Int.random(in: -1_000_000...1_000_000, using: &rng))
        case 3: return String(Double.random(in: -1e6...1e6, using: &rng))
        case 4:
            let choices = ["acct-1", "user-1", UUID().uuidString, String(repeating: "x", count: 3000)]
            let raw =
                Bool.random(using: &rng)
                ? choices.randomElement(using: &rng)!
                : (0..<Int.random(in: 0...8, using: &rng))
                    .map { _ in pieces.randomElement(using: &rng)! }.joined()
            return quoted(raw)
        case 5:
            let items = (0..<Int.random(in: 0...3, using: &rng)).map { _ in value(depth: depth + 1, rng: &rng) }
            return "[" + items.joined(separator: ",") + "]"
        default:
            let fields = (0..<Int.random(in: 0...4, using: &rng)).map { _ in
                quoted(keys.randomElement(using: &rng)!) + ":" + value(depth: depth + 1, rng: &rng)
            }
            return "{" + fields.joined(separator: ",") + "}"
        }
    }

    static func quoted(_ text: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [text], options: [.fragmentsAllowed])
        return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
    }

    static let bytes: Gen<[UInt8]> = Gen(run: { rng in
        (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    })

    /// The scope rule, written independently of the SQL: split on commas, trim, exact token.
    static func hasIntegrationScope(_ scopes: String) -> Bool {
        scopes.split(separator: ",", omittingEmptySubsequences: false)
            .contains { $0.trimmingCharacters(in: CharacterSet(charactersIn: " \t\n\r")) == "integration" }
    }
}

@Suite("Fuzzing what the worker reads", .timeLimit(.minutes(4)))
struct FuzzTests {
    static func job(kind: String, payload: [UInt8], attempt: Int = 1) -> Job {
        Job(
            id: Int64.random(in: 1...1_000_000_000), kind: kind, payload: PQJSON(bytes: payload),
            attempt: attempt,
            maxAttempts: 8, createdAt: Date(), runAt: Date())
    }

    @Test("any payload ends the fan-out as completed or as a permanent failure with a reason")
    func fanOutPayloads() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database)
            try await fixture.addClient("a")
            let pool = database.pool()
            let handler = IntegrationConnectedHandler(configuration: .init())
            let context = JobContext(logger: TestDatabase.logger, database: pool, workerID: "fuzz")
            func check(_ payload: [UInt8]) async throws {
                let outcome = try await handler.handle(
                    Self.job(kind: "integration.connected", payload: payload), context: context)
                switch outcome.decision {
                case .complete: break
                case .fail(let reason, _): #expect(!reason.isEmpty && reason.count < 500)
                default: Issue.record("unexpected \(outcome.decision) for \(String(decoding: payload, as: UTF8.self))")
                }
            }
            await propertyCheck(count: 300, input: Fuzz.json) { try await check(Array($0.utf8)) }
            await propertyCheck(count: 100, input: Fuzz.bytes) { try await check($0) }
            await pool.close()
            await fixture.receiver.stop()
        }
    }

    @Test("any payload ends a delivery job as a permanent failure with a reason, without a request")
    func deliverPayloads() async throws {
        try await withTestDatabase(appTables: true) { database in
            let pool = database.pool()
            let sender = WebhookSender(configuration: .init(allowHTTP: true, allowPrivateNetworks: true))
            let handler = WebhookDeliverHandler(sender: sender)
            let context = JobContext(logger: TestDatabase.logger, database: pool, workerID: "fuzz")
            await propertyCheck(count: 300, input: Fuzz.json) { text in
                let outcome = try await handler.handle(
                    Self.job(kind: "webhook.deliver", payload: Array(text.utf8)), context: context)
                guard case .fail(let reason, _) = outcome.decision else {
                    Issue.record("\(text) gave \(outcome.decision)")
                    return
                }
                #expect(reason.contains("payload") || reason.contains("does not exist"), "\(reason)")
            }
            try await sender.shutdown()
            await pool.close()
        }
    }

    @Test("through the real worker, every inserted job ends recorded: none lost, none stuck")
    func everyJobEndsRecorded() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database)
            try await fixture.addClient("a")
            let (worker, sender) = fixture.startWorker(schedule: [.milliseconds(50)])
            var inserted = 0
            await propertyCheck(count: 150, input: Fuzz.json) { (text: String) async throws in
                let kind = ["integration.connected", "webhook.deliver"][inserted % 2]
                try await database.query(
                    "INSERT INTO webhook_worker.jobs (kind, payload) VALUES ($1, $2::jsonb)", [kind, text])
                inserted += 1
            }
            let drained = await eventually(timeout: .seconds(60)) {
                let left = try? await database.count(
                    "SELECT count(*) FROM webhook_worker.jobs WHERE kind = 'integration.connected' OR attempt = 0")
                return left == 0
            }
            try await Task.sleep(for: .milliseconds(500))
            try await stopAll(worker, sender, fixture)
            #expect(drained)
            // Each fuzzed job has at least one attempt row and sits in no half-finished state.
            let unrecorded = try await database.count(
                """
                SELECT count(*) FROM generate_series(1, $1) AS n
                WHERE NOT EXISTS (SELECT 1 FROM webhook_worker.job_attempts a WHERE a.job_id = n)
                """, [inserted])
            #expect(unrecorded == 0)
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.jobs WHERE state = 'running'") == 0)
        }
    }

    @Test("recipient selection by scopes matches the rule, for any scopes string")
    func scopesRule() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database)
            var expected = Set<String>()
            var index = 0
            await propertyCheck(count: 150, input: Fuzz.text(pieces: 0...8)) { (scopes: String) async throws in
                index += 1
                let id = "client-\(index)"
                try await fixture.addClient(id, scopes: scopes)
                if Fuzz.hasIntegrationScope(scopes) { expected.insert(id) }
            }
            let selected = try await database.query(
                #"SELECT c.id FROM "OAuthClient" c WHERE \#(Recipients.eligibility(user: "$1"))"#, ["user-1"]
            ).rows.map { try $0.decode("id", as: String.self) }
            #expect(Set(selected) == expected)
            await fixture.receiver.stop()
        }
    }

    @Test("odd webhook URLs and secrets end every delivery recorded, with passwords masked")
    func oddClients() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database)
            let port = fixture.receiver.port
            let urls = [
                "http://127.0.0.1:\(port)/ok", "http://user:hunter2@127.0.0.1:\(port)/creds", "http://[::1]:\(port)/v6",
                "http://[::ffff:127.0.0.1]:\(port)/mapped", "http://bücher.invalid/idn",
                "http://xn--bcher-kva.invalid/",
                "https://127.0.0.1:\(port)/" + String(repeating: "a", count: 5000), "javascript:alert(1)",
                "ftp://127.0.0.1/",
                " http://127.0.0.1:\(port)/space", "http://127.0.0.1:\(port)/q?token=s3cr3t&x",
                "http://[fe80::1%25eth0]:\(port)/",
                "http://127.1:\(port)/short", "http://0x7f000001:\(port)/hex", "http://:\(port)/", "%%%", "http://a b/",
            ]
            var index = 0
            await propertyCheck(count: 40, input: Fuzz.text(pieces: 0...10)) { (secret: String) async throws in
                index += 1
                try await fixture.addClient(
                    "odd-\(index)", url: urls[index % urls.count], secret: secret.isEmpty ? nil : secret)
            }
            let (worker, sender) = fixture.startWorker(
                schedule: [.milliseconds(50)], requestTimeout: .seconds(2), allowHTTP: true, allowPrivateNetworks: false
            )
            try await fixture.connectIntegration()
            let settled = await eventually(timeout: .seconds(60)) {
                let jobs = try? await database.count("SELECT count(*) FROM webhook_worker.jobs")
                let deliveries = try? await database.count("SELECT count(*) FROM webhook_worker.webhook_deliveries")
                return jobs == 0 && (deliveries ?? 0) > 0
            }
            try await stopAll(worker, sender, fixture)
            #expect(settled)
            #expect(
                try await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'pending'") == 0)
            #expect(
                try await database.count(
                    """
                    SELECT count(*) FROM webhook_worker.delivery_attempts WHERE url LIKE '%hunter2%' OR url LIKE \
                    '%s3cr3t%'
                    """
                ) == 0)
            // Loopback is refused by the policy here: nothing reached the receiver.
            #expect(fixture.receiver.received.isEmpty)
        }
    }

    @Test("settings text never crashes the parsers, and formatted durations parse back")
    func settingsText() async {
        await propertyCheck(count: 500, input: Fuzz.text(pieces: 0...6)) { text in
            _ = DurationText.parse(text)
            _ = DurationText.schedule(text)
        }
        await propertyCheck(count: 500, input: Gen.int(in: 0...(86_400_000 * 30))) { milliseconds in
            let duration = Duration.milliseconds(milliseconds)
            #expect(DurationText.parse(DurationText.format(duration)) == duration)
        }
    }

    @Test("IPv4 classification matches the ranges, and every IPv4-mapped form gets the same class")
    func addressClasses() async {
        await propertyCheck(count: 2000, input: Gen.uint32()) { value in
            let bytes = [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
            func inRange(_ base: UInt32, _ bits: UInt32) -> Bool { value >> (32 - bits) == base >> (32 - bits) }
            let internalRanges: [(UInt32, UInt32)] = [
                (0x0000_0000, 8), (0x7F00_0000, 8), (0x0A00_0000, 8), (0xAC10_0000, 12), (0xC0A8_0000, 16),
                (0xA9FE_0000, 16),
                (0x6440_0000, 10), (0xE000_0000, 4), (0xF000_0000, 4), (0xC000_0000, 24), (0xC612_0000, 15),
            ]
            let expectedInternal = internalRanges.contains { inRange($0.0, $0.1) }
            let kind = IPAddressClass.of(bytes)
            #expect(kind.isInternal == expectedInternal, "\(bytes)")
            #expect(IPAddressClass.of([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] + bytes) == kind)
            #expect(IPAddressClass.of([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0] + bytes) == kind)
        }
    }
}
