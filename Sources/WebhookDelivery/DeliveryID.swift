import Foundation

/// Delivery ids carry their time: UUID version 7 (RFC 9562), the first 48 bits the Unix time in
/// milliseconds, then the version, 74 random bits and the variant. A lookup by id adds
/// ``window(_:ids:)``, so that PostgreSQL reads only the partitions of the history that may
/// hold it (`sql/webhook_delivery/015_delivery_id_times.sql`).
public enum DeliveryID {
    /// A new id for a delivery made at `date`.
    public static func make(at date: Date = Date()) -> UUID {
        var random = SystemRandomNumberGenerator()
        return make(at: date, using: &random)
    }

    static func make(at date: Date, using random: inout some RandomNumberGenerator) -> UUID {
        let milliseconds = UInt64(max(0, (date.timeIntervalSince1970 * 1000).rounded(.down)))
        var bytes = [UInt8](repeating: 0, count: 16)
        for index in 0..<6 { bytes[index] = UInt8(truncatingIfNeeded: milliseconds >> (8 * (5 - index))) }
        for index in 6..<16 { bytes[index] = UInt8.random(in: 0...255, using: &random) }
        bytes[6] = 0x70 | (bytes[6] & 0x0F)
        bytes[8] = 0x80 | (bytes[8] & 0x3F)
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8], bytes[9],
                bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }

    /// The time a version 7 id carries, to the millisecond; nil for another version.
    public static func time(of id: UUID) -> Date? {
        let bytes = withUnsafeBytes(of: id.uuid) { Array($0) }
        guard bytes[6] >> 4 == 7 else { return nil }
        let milliseconds = bytes[0..<6].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    /// SQL that keeps `column` (`created_at` of webhook_deliveries) within a day of the times
    /// the ids of `ids` (an expression of type uuid[]) carry, unbounded for ids without one.
    static func window(_ column: String, ids: String) -> String {
        """
        \(column) >= webhook_worker.delivery_ids_since(\(ids)) AND \(column) < webhook_worker.delivery_ids_until(\(ids))
        """
    }
}
