import Foundation

/// Delivery ids carry their time: UUID version 7 (RFC 9562), the first 48 bits the Unix time in
/// milliseconds, then the version, 74 random bits and the variant. A lookup by id passes the
/// ``span(of:)`` of its ids as two parameters compared with `created_at` (``window(_:_:_:)``), so
/// that PostgreSQL reads only the partitions of the history that may hold it.
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

    /// How far a delivery's `created_at` (the database's clock, at the insert) may be from the time
    /// its id carries (the worker's clock, just before the insert). A replica whose clock is further
    /// off than this fails its deliveries anyway: receivers refuse `webhook-timestamp`s more than
    /// five minutes off.
    static let clockAllowance: TimeInterval = 3600

    /// The span of `created_at` that holds the deliveries of `ids`: the times their ids carry,
    /// ``clockAllowance`` either side; from 1970 to the year 3000 if any id carries no time (a
    /// random id, made before ids carried their time, finds its delivery in any partition).
    public static func span(of ids: some Sequence<UUID>) -> Range<Date> {
        var earliest: Date?
        var latest: Date?
        for id in ids {
            guard let time = time(of: id) else { return unbounded }
            earliest = min(earliest ?? time, time)
            latest = max(latest ?? time, time)
        }
        guard let earliest, let latest else { return unbounded }
        return earliest.addingTimeInterval(-clockAllowance)..<latest.addingTimeInterval(clockAllowance)
    }

    static let unbounded = Date(timeIntervalSince1970: 0)..<Date(timeIntervalSince1970: 32_503_680_000)

    /// SQL that keeps `column` (`created_at` of webhook_deliveries) within a ``span(of:)`` given
    /// as parameters `$lower` and `$upper`. Compared with the partition key, plain parameters let
    /// PostgreSQL leave out the other partitions when it plans the statement (or, under a generic
    /// plan, when it starts it), with no function called per row.
    static func window(_ column: String, _ lower: Int, _ upper: Int) -> String {
        "\(column) >= $\(lower)::timestamptz AND \(column) < $\(upper)::timestamptz"
    }
}
