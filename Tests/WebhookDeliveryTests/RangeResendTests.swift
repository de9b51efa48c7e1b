import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing
import WebhookDelivery
import WebhookReceiver

/// `Deliveries.resend(_:batchSize:dryRun:progress:)`: every delivery of a client's time range,
/// in batches, never two live jobs for one delivery.
@Suite("Resend by range", .timeLimit(.minutes(4)))
struct RangeResendTests {
    /// Inserts a delivery of `client`, created `minutesAgo` minutes ago, with `status`.
    @discardableResult
    static func insert(
        _ database: TestDatabase, client: String, minutesAgo: Int, status: String, user: String = "user-1"
    ) async throws -> UUID {
        let createdAt = Date().addingTimeInterval(-Double(minutesAgo) * 60)
        let id = DeliveryID.make(at: createdAt)
        try await database.query(
            """
            INSERT INTO webhook_worker.webhook_deliveries
                (delivery_id, event, source_job_id, integration_account_id, user_id, oauth_client_id, payload, \
            status, created_at)
            VALUES ($1, 'integration.connected', $6, 'acct-1', $4, $2, '{}', $3, $5)
            """, [id, client, status, user, createdAt, Int64.random(in: 1...Int64.max)])
        return id
    }

    static func statuses(_ database: TestDatabase) async throws -> [UUID: String] {
        var statuses: [UUID: String] = [:]
        for row in try await database.query(
            "SELECT delivery_id, status FROM webhook_worker.webhook_deliveries"
        ).rows {
            statuses[try row.decode("delivery_id")] = try row.decode("status")
        }
        return statuses
    }

    /// The `webhook.deliver` jobs in the queue per delivery, counted by payload (not by unique key).
    static func liveJobs(_ database: TestDatabase) async throws -> [UUID: Int] {
        var jobs: [UUID: Int] = [:]
        for row in try await database.query(
            """
            SELECT (payload ->> 'delivery_id')::uuid AS id, count(*)::int AS n FROM webhook_worker.jobs
            WHERE kind = 'webhook.deliver' GROUP BY 1
            """
        ).rows {
            jobs[try row.decode("id")] = try row.decode("n")
        }
        return jobs
    }

    static func range(_ client: String, hours: Double, status: Delivery.Status? = nil) -> Deliveries.Range {
        Deliveries.Range(
            client: client, from: Date().addingTimeInterval(-hours * 3600), until: Date().addingTimeInterval(1),
            status: status)
    }

    @Test("a dry run counts what matches and what is live, and changes nothing")
    func dryRun() async throws {
        try await withTestDatabase { database in
            let failed = try await Self.insert(database, client: "client-a", minutesAgo: 30, status: "failed")
            try await Self.insert(database, client: "client-a", minutesAgo: 20, status: "delivered")
            try await Self.insert(database, client: "client-a", minutesAgo: 300, status: "failed")
            try await Self.insert(database, client: "client-b", minutesAgo: 10, status: "failed")
            let queued = try await Self.insert(database, client: "client-a", minutesAgo: 5, status: "failed")
            _ = try await database.withConnection { try await Deliveries($0).resend(queued) }
            let before = try await Self.statuses(database)

            let counted = try await database.withConnection {
                try await Deliveries($0).resend(Self.range("client-a", hours: 2), batchSize: 2, dryRun: true)
            }
            #expect(counted.matched == 3 && counted.resent == 2 && counted.skippedLive == 1 && counted.batches == 2)
            let onlyFailed = try await database.withConnection {
                try await Deliveries($0).resend(Self.range("client-a", hours: 2, status: .failed), dryRun: true)
            }
            // The queued one is pending now (its resend made it so): only the other failed one matches.
            #expect(onlyFailed.matched == 1 && onlyFailed.resent == 1 && onlyFailed.skippedLive == 0)
            #expect(try await Self.statuses(database) == before)
            #expect(try await Self.liveJobs(database) == [queued: 1])
            #expect(before[failed] == "failed")
        }
    }

    @Test("a range of mixed statuses: exactly the matching deliveries get a job and turn pending, in batches")
    func mixedStatuses() async throws {
        try await withTestDatabase { database in
            var expected: Set<UUID> = []
            var untouched: Set<UUID> = []
            for minutes in stride(from: 5, through: 115, by: 10) {
                expected.insert(
                    try await Self.insert(database, client: "client-a", minutesAgo: minutes, status: "failed"))
                untouched.insert(
                    try await Self.insert(database, client: "client-a", minutesAgo: minutes + 1, status: "delivered"))
                untouched.insert(
                    try await Self.insert(database, client: "client-a", minutesAgo: minutes + 2, status: "cancelled"))
                untouched.insert(
                    try await Self.insert(database, client: "client-b", minutesAgo: minutes, status: "failed"))
            }
            // Outside the range, and another user's within it (the user filter).
            untouched.insert(try await Self.insert(database, client: "client-a", minutesAgo: 200, status: "failed"))
            untouched.insert(
                try await Self.insert(database, client: "client-a", minutesAgo: 50, status: "failed", user: "user-2"))
            // One already queued (a live job): skipped, counted as such.
            let live = try await Self.insert(database, client: "client-a", minutesAgo: 60, status: "failed")
            _ = try await database.withConnection { try await Deliveries($0).resend(live) }

            var range = Self.range("client-a", hours: 2, status: .failed)
            range.user = "user-1"
            var seen: [Deliveries.RangeResend] = []
            let summary = try await database.withConnection {
                try await Deliveries($0).resend(range, batchSize: 5) { seen.append($0) }
            }
            #expect(summary.matched == 12 && summary.resent == 12 && summary.skippedLive == 0)
            #expect(summary.batches == 3 && seen.map(\.resent) == [5, 10, 12])

            // Again without the status filter: the resent ones are live now, the live one too.
            let again = try await database.withConnection {
                try await Deliveries($0).resend(Self.range("client-a", hours: 2), batchSize: 100)
            }
            #expect(again.resent == 25 && again.skippedLive == 13 && again.matched == 38)

            let jobs = try await Self.liveJobs(database)
            #expect(jobs.values.allSatisfy { $0 == 1 })
            let statuses = try await Self.statuses(database)
            for id in expected { #expect(statuses[id] == "pending" && jobs[id] == 1) }
            for id in untouched where statuses[id] == "failed" { #expect(jobs[id] == nil) }
        }
    }

    @Test("resent deliveries reach the receiver again with the same delivery ids, as fresh attempts")
    func sameIDsFreshAttempts() async throws {
        try await withTestDatabase(appTables: true) { database in
            // The receiver answers 410 until it is told to accept: the first attempt dead-letters the delivery.
            let accept = Flag()
            let fixture = try await DeliveryFixture.make(database: database) { _ in
                accept.isSet ? .ok : .status(410)
            }
            try await fixture.addClient("c1")
            try await fixture.addClient("c2")
            try await fixture.connectIntegration()
            let (worker, sender) = fixture.startWorker()
            let failedBoth = await eventually {
                (try? await database.count(
                    "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'failed'")) == 2
            }
            #expect(failedBoth)
            accept.set()
            let summary = try await database.withConnection {
                try await Deliveries($0).resend(Self.range("c1", hours: 1))
            }
            #expect(summary.resent == 1 && summary.matched == 1)
            let delivered = await eventually { await fixture.status(client: "c1") == "delivered" }
            #expect(delivered)
            let id: UUID = try #require(
                try await database.scalar(
                    "SELECT delivery_id FROM webhook_worker.webhook_deliveries WHERE oauth_client_id = 'c1'"))
            let c1 = fixture.requests(to: "c1")
            #expect(c1.count == 2 && c1.allSatisfy { $0.header("X-Webhook-Delivery") == id.uuidString.lowercased() })
            let attempts = try await fixture.attempts(client: "c1")
            #expect(attempts.count == 2)
            #expect(await fixture.status(client: "c2") == "failed" && fixture.requests(to: "c2").count == 1)
            try await stopAll(worker, sender, fixture)
        }
    }

    @Test("operators resending one range at once: never two live jobs for a delivery, each resent once (seeded)")
    func concurrentOperators() async throws {
        let seed =
            ProcessInfo.processInfo.environment["RANGE_RESEND_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 0...UInt64.max)
        var random = SeededGenerator(seed: seed)
        let note = Comment(rawValue: "seed \(seed) (replay with RANGE_RESEND_SEED=\(seed))")
        try await withTestDatabase { database in
            let count = Int.random(in: 40...120, using: &random)
            var all: Set<UUID> = []
            var live: Set<UUID> = []
            for _ in 0..<count {
                let status = ["failed", "delivered", "cancelled", "pending"].randomElement(using: &random)!
                let id = try await Self.insert(
                    database, client: "client-a", minutesAgo: Int.random(in: 1...100, using: &random), status: status)
                all.insert(id)
                if status == "pending" && Bool.random(using: &random) {
                    _ = try await database.withConnection { try await Deliveries($0).resend(id) }
                    live.insert(id)
                }
            }
            let sizes = (0..<Int.random(in: 2...4, using: &random)).map { _ in Int.random(in: 1...30, using: &random) }
            let range = Self.range("client-a", hours: 2)
            let summaries = try await withThrowingTaskGroup(of: Deliveries.RangeResend.self) { group in
                for size in sizes {
                    group.addTask {
                        try await database.withConnection { try await Deliveries($0).resend(range, batchSize: size) }
                    }
                }
                return try await group.reduce(into: [Deliveries.RangeResend]()) { $0.append($1) }
            }
            // No worker runs: jobs are only ever added, so the end holds every job that was ever live.
            let jobs = try await Self.liveJobs(database)
            #expect(jobs.values.allSatisfy { $0 == 1 }, note)
            #expect(Set(jobs.keys) == all, note)
            #expect(summaries.map(\.resent).reduce(0, +) == count - live.count, "batch sizes \(sizes); seed \(seed)")
            for summary in summaries {
                #expect(summary.matched == count && summary.resent + summary.skippedLive == count, note)
            }
            let statuses = try await Self.statuses(database)
            #expect(statuses.values.allSatisfy { $0 == "pending" }, note)
        }
    }
}
