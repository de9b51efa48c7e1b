import Foundation
import LibPQ
@testable import TestSupport
import Testing
@testable import WebhookDelivery

/// Delivery ids carry their time (UUID version 7), which finds their partition.
@Suite("Delivery ids")
struct DeliveryIDTests {
    @Test("an id made at a time carries it, with version 7 and the RFC variant; random bits differ")
    func layout() {
        let date = Date(timeIntervalSince1970: 1_765_000_000.123)
        let id = DeliveryID.make(at: date)
        let text = id.uuidString.lowercased()
        #expect(Array(text)[14] == "7")
        #expect("89ab".contains(Array(text)[19]))
        #expect(
            String(text.prefix(13)).replacingOccurrences(of: "-", with: "")
                == String(1_765_000_000_123, radix: 16)
                .leftPadded(to: 12))
        #expect(DeliveryID.time(of: id) == Date(timeIntervalSince1970: 1_765_000_000.123))
        #expect(DeliveryID.make(at: date) != id)
        #expect(DeliveryID.time(of: UUID(uuidString: "9b2f1c4e-3d5a-4f6b-8c7d-0e1f2a3b4c5d")!) == nil)
    }

    @Test("each of the 74 random bits takes both values over many ids; the version and variant never change")
    func randomBits() {
        let seed = UInt64.random(in: 1...UInt64.max)
        var random = SeededGenerator(seed: seed)
        var seenOne = [UInt8](repeating: 0, count: 16), seenZero = [UInt8](repeating: 0, count: 16)
        let date = Date(timeIntervalSince1970: 1_765_000_000.123)
        for _ in 0..<2000 {
            let bytes = withUnsafeBytes(of: DeliveryID.make(at: date, using: &random).uuid) { Array($0) }
            #expect(bytes[6] >> 4 == 7 && bytes[8] >> 6 == 2, "seed \(seed)")
            for index in 0..<16 {
                seenOne[index] |= bytes[index]
                seenZero[index] |= ~bytes[index]
            }
        }
        // The random bits: the low four of byte 6, all of byte 7, the low six of byte 8, bytes 9 to 15.
        let randomMask: [UInt8] = [0, 0, 0, 0, 0, 0, 0x0F, 0xFF, 0x3F] + Array(repeating: 0xFF, count: 7)
        for index in 0..<16 where randomMask[index] != 0 {
            #expect(seenOne[index] & randomMask[index] == randomMask[index], "byte \(index), seed \(seed)")
            #expect(seenZero[index] & randomMask[index] == randomMask[index], "byte \(index), seed \(seed)")
        }
    }

    @Test("the earliest time of ids: their earliest time less an hour; 1970 with a random id or none")
    func since() {
        let early = Date(timeIntervalSince1970: 1_765_000_000.25)
        let late = early.addingTimeInterval(86_400 * 3)
        let ids = [DeliveryID.make(at: late), DeliveryID.make(at: early), DeliveryID.make(at: late)]
        #expect(DeliveryID.since(ids) == early.addingTimeInterval(-3600))
        #expect(DeliveryID.since(ids.prefix(1)) == late.addingTimeInterval(-3600))
        #expect(DeliveryID.since(ids + [UUID()]) == Date(timeIntervalSince1970: 0))
        #expect(DeliveryID.since([]) == Date(timeIntervalSince1970: 0))
    }

    @Test("with 40 days of partitions, the statements by delivery id plan only the partitions since its time")
    func lookupsPlanTheirPartitions() async throws {
        try await withTestDatabase(appTables: true) { database in
            // Daily partitions from 40 days ago to 3 days ahead, as a month's retention keeps them.
            for sql in [
                "SELECT count(*) FROM webhook_worker.drop_history_partitions('infinity')",
                """
                SELECT count(*) FROM webhook_worker.create_history_partitions(
                    interval '1 day', interval '41 days', now() - interval '40 days')
                """,
                "SELECT count(*) FROM webhook_worker.create_history_partitions(interval '1 day', interval '3 days')",
            ] {
                _ = try await database.query(sql)
            }
            let partitions = try await database.scalar(
                """
                SELECT count(*) FROM webhook_worker.history_partitions
                WHERE table_name = 'webhook_deliveries'
                """, as: Int64.self)
            #expect((partitions ?? 0) >= 43)
            let id = DeliveryID.make()
            let since = DeliveryID.since([id])
            // The plan PostgreSQL makes for these values, as for a prepared statement's custom plan.
            func planned(_ query: PQQuery, _ bindings: [any PQEncodable]) async throws -> Int {
                let plan = try await database.query("EXPLAIN (COSTS OFF) " + query.sql, bindings).rows.map {
                    try $0.decode("QUERY PLAN", as: String.self)
                }.joined(separator: "\n")
                return plan.components(separatedBy: " on webhook_deliveries_").count - 1
            }
            let recheck = try await planned(
                Recipients.recheck, [PQArray([id]), PQInterval(.seconds(60)), since])
            let record = try await planned(
                WebhookDeliverHandler.recordAttempt,
                (0..<10).map { _ in PQArray<String?>([]) as any PQEncodable } + [since])
            let show = try await planned(Deliveries.get, Deliveries.withSince(id))
            // Today's partition and the (empty) days ahead, yesterday's too within an hour of
            // midnight; an update names each partition twice and its attempt's read once more.
            #expect(
                (1...5).contains(recheck) && (1...15).contains(record) && (1...5).contains(show),
                "\(recheck) \(record) \(show)")
        }
    }

    @Test("PostgreSQL reads the same time from the id, and a lookup window a day either side")
    func databaseAgrees() async throws {
        try await withTestDatabase { database in
            let date = Date(timeIntervalSince1970: 1_765_000_000.5)
            let id = DeliveryID.make(at: date)
            let seconds = try await database.scalar(
                "SELECT extract(epoch FROM webhook_worker.delivery_id_time($1::uuid))::float8", [id], as: Double.self)
            #expect(seconds == 1_765_000_000.5)
            let window = try #require(
                try await database.query(
                    """
                    SELECT extract(epoch FROM webhook_worker.delivery_ids_since(ARRAY[$1::uuid]))::float8 AS since,
                           extract(epoch FROM webhook_worker.delivery_ids_until(ARRAY[$1::uuid]))::float8 AS until,
                           webhook_worker.delivery_ids_until(ARRAY[$1::uuid, gen_random_uuid()]) = 'infinity' AS open
                    """, [id]
                ).first)
            #expect(try window.decode("since", as: Double.self) == 1_765_000_000.5 - 86_400)
            #expect(try window.decode("until", as: Double.self) == 1_765_000_000.5 + 86_400)
            #expect(try window.decode("open", as: Bool.self))
        }
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        String(repeating: "0", count: max(0, length - count)) + self
    }
}
