import Foundation
import LibPQ
@testable import TestSupport
import Testing
@testable import webhook_worker

/// The reconciler (docs/operations.md, "Concurrency keys and the reconciler"): a key that a race
/// left parked with free slots delays its deliveries by one interval, never strands them.
@Suite("Key repair", .timeLimit(.minutes(4)))
struct KeyRepairTests {
    @Test("the reconciler's interval: 30s by default, flag and variable, off")
    func settings() throws {
        #expect(try RunCommand.parse([]).settings(environment: [:]).queue.keyRepairInterval == .seconds(30))
        #expect(
            try RunCommand.parse(["--key-repair-interval", "5s"]).settings(environment: [:]).queue.keyRepairInterval
                == .seconds(5))
        #expect(
            try RunCommand.parse([]).settings(environment: ["WORKER_KEY_REPAIR_INTERVAL": "off"]).queue
                .keyRepairInterval == nil)
        #expect(throws: (any Error).self) {
            try RunCommand.parse(["--key-repair-interval", "soon"]).settings(environment: [:])
        }
    }

    @Test("a delivery key broken by hand (parked with nothing running, no wake-up) is mended, warned and counted")
    func brokenKeyIsMended() async throws {
        try await withTestDatabase(appTables: true) { database in
            // A delivery job of an endpoint key, its wake-up lost, its key parked as if full.
            try await database.script(
                """
                INSERT INTO webhook_worker.jobs (kind, payload, concurrency_key)
                VALUES ('webhook.deliver', '{"broken": true}', 'client:c1');
                DELETE FROM webhook_worker.concurrency_key_wakeups;
                INSERT INTO webhook_worker.concurrency_keys (kind, concurrency_key, priority, head_run_at, head_id)
                VALUES ('webhook.deliver', 'client:c1', 0, 'infinity', 4);
                """)
            let port = try freeLoopbackPort()
            let arguments = [
                "run", "--allow-http", "--allow-private-networks", "--poll-interval", "200ms", "--catch-up-interval",
                "off", "--http-port", "\(port)", "--http-host", "127.0.0.1", "--key-repair-interval", "300ms",
            ]
            let worker = try startWorker(arguments, environment: ["DATABASE_URL": database.conninfo])
            defer { worker.signal(SIGKILL) }
            // The job runs (its payload is unreadable, so it becomes a dead letter): the key moved.
            #expect(
                await eventually {
                    (try? await database.count("SELECT count(*) FROM webhook_worker.jobs")) == 0
                }, "\(worker.output)")
            #expect(try await database.count("SELECT count(*) FROM webhook_worker.dead_letter_jobs") == 1)
            #expect(
                await eventually {
                    await scrapeMetrics(port: port).split(separator: "\n").contains {
                        $0.hasPrefix("webhook_worker_keys_repaired_total{") && $0.contains("kind=\"webhook.deliver\"")
                            && $0.contains("was=\"parked\"") && $0.hasSuffix(" 1")
                    }
                })
            #expect(worker.output.contains("repaired a concurrency key"))
            // The key itself may name a tenant: it stays out of the log.
            #expect(!worker.output.contains("client:c1"))
            worker.signal(SIGTERM)
            #expect(await worker.wait(timeout: .seconds(60)) == 0, "\(worker.output)")
        }
    }
}
