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
