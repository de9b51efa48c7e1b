import Foundation

/// Delivery ids carry their time: UUID version 7 (RFC 9562), the first 48 bits the Unix time in
/// milliseconds, then the version, 74 random bits and the variant. A lookup by id passes the
/// ``since(_:)`` of its ids as a parameter compared with `created_at` (``window(_:_:)``), so that
/// PostgreSQL reads only the partitions of the history that may hold it.
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
        // Two 64-bit draws for the ten random bytes: one draw a byte made ten getrandom calls an id
        // (1 to 2 % of the worker's CPU with 16 recipients an event).
        let high = random.next(), low = random.next()
        for index in 6..<8 { bytes[index] = UInt8(truncatingIfNeeded: high >> (8 * (index - 6))) }
        for index in 8..<16 { bytes[index] = UInt8(truncatingIfNeeded: low >> (8 * (index - 8))) }
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

    /// The earliest `created_at` a delivery of `ids` may have: the earliest time their ids carry,
    /// less ``clockAllowance``; 1970 if any id carries no time (a random id, made before ids
    /// carried their time, finds its delivery in any partition), or if there are none.
    public static func since(_ ids: some Sequence<UUID>) -> Date {
        var earliest: Date?
        for id in ids {
            guard let time = time(of: id) else { return unbounded }
            earliest = min(earliest ?? time, time)
        }
        return earliest?.addingTimeInterval(-clockAllowance) ?? unbounded
    }

    static let unbounded = Date(timeIntervalSince1970: 0)

    /// SQL that keeps `column` (`created_at` of webhook_deliveries) at or after a ``since(_:)``
    /// given as parameter `$parameter`. Compared with the partition key, a plain parameter lets
    /// PostgreSQL leave out the older partitions when it plans the statement (or, under a generic
    /// plan, when it starts it), with no function called per row. Only the days ahead (created
    /// empty by the upkeep) stay beside today's. No upper bound: a generic plan would take the pair
    /// for a narrow range (it cannot see the values) and read the `created_at` index across it,
    /// where the id's index finds the rows at once.
    static func window(_ column: String, _ parameter: Int) -> String {
        "\(column) >= $\(parameter)::timestamptz"
    }
}
