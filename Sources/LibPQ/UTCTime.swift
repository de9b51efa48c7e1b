import Foundation

/// Dates as text, the one way this program reads and writes them: instants in UTC on the
/// proleptic Gregorian calendar, by arithmetic (Howard Hinnant's civil-date algorithms), with no
/// locale, time zone database or formatter object involved. PostgreSQL's timestamps, the
/// webhook's `timestamp`, log lines, operator input and HTTP dates all go through it.
public enum UTCTime {
    /// A date's calendar and clock fields in UTC.
    public struct Fields: Sendable, Equatable {
        public var year: Int64
        /// 1...12.
        public var month: Int64
        public var day: Int64
        public var hour: Int64
        public var minute: Int64
        public var second: Int64
        /// 0..<1_000_000.
        public var microsecond: Int64

        public init(
            year: Int64, month: Int64, day: Int64, hour: Int64 = 0, minute: Int64 = 0, second: Int64 = 0,
            microsecond: Int64 = 0
        ) {
            self.year = year
            self.month = month
            self.day = day
            self.hour = hour
            self.minute = minute
            self.second = second
            self.microsecond = microsecond
        }
    }

    /// `date`'s fields in UTC, to the nearest microsecond.
    public static func fields(of date: Date) -> Fields {
        let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        let seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let civil = civilFromDays(days)
        return Fields(
            year: civil.year, month: civil.month, day: civil.day, hour: secondOfDay / 3600,
            minute: (secondOfDay % 3600) / 60, second: secondOfDay % 60, microsecond: micros - seconds * 1_000_000)
    }

    /// The instant of `fields`, read in a zone `offsetSeconds` east of UTC.
    public static func date(_ fields: Fields, offsetSeconds: Int64 = 0) -> Date {
        let days = daysFromCivil(year: fields.year, month: fields.month, day: fields.day)
        let seconds = days * 86_400 + fields.hour * 3600 + fields.minute * 60 + fields.second - offsetSeconds
        return Date(timeIntervalSince1970: Double(seconds) + Double(fields.microsecond) / 1_000_000)
    }

    /// `2024-01-15T10:30:00.123Z`, with `fractionDigits` (0 to 6) digits of the second,
    /// truncated (as JavaScript's `toISOString()` does for 3).
    public static func iso8601(_ date: Date, fractionDigits: Int = 3) -> String {
        let f = fields(of: date)
        let digits = min(max(fractionDigits, 0), 6)
        var scale: Int64 = 1
        for _ in digits..<6 { scale *= 10 }
        guard (0...9999).contains(f.year) else {
            // Outside four digits: as printf writes it (a sign, more digits).
            var text = String(
                format: "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld", f.year, f.month, f.day, f.hour, f.minute,
                f.second)
            if digits > 0 { text += String(format: ".%0\(digits)lld", f.microsecond / scale) }
            return text + "Z"
        }
        // Digit by digit: String(format:) was 3 % of the worker's CPU at full speed (every
        // webhook's body carries a timestamp).
        var bytes: [UInt8] = []
        bytes.reserveCapacity(27)
        func append(_ value: Int64, width: Int) {
            var divisor: Int64 = 1
            for _ in 1..<width { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                bytes.append(UInt8(ascii: "0") + UInt8(rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        append(f.year, width: 4)
        bytes.append(UInt8(ascii: "-"))
        append(f.month, width: 2)
        bytes.append(UInt8(ascii: "-"))
        append(f.day, width: 2)
        bytes.append(UInt8(ascii: "T"))
        append(f.hour, width: 2)
        bytes.append(UInt8(ascii: ":"))
        append(f.minute, width: 2)
        bytes.append(UInt8(ascii: ":"))
        append(f.second, width: 2)
        if digits > 0 {
            bytes.append(UInt8(ascii: "."))
            append(f.microsecond / scale, width: digits)
        }
        bytes.append(UInt8(ascii: "Z"))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Reads an ISO 8601 / RFC 3339 instant, or a `timestamptz` as PostgreSQL writes it:
    /// `YYYY-MM-DD`, `T` or a space, `hh:mm:ss`, an optional fraction (to microseconds), and `Z` or
    /// an offset `±hh`, `±hh:mm`, `±hhmm` (no offset means UTC). Nil for anything else.
    public static func parseISO8601(_ text: String) -> Date? {
        var scanner = Scanner(text)
        guard let year = scanner.number(4), scanner.skip("-"), let month = scanner.number(2), scanner.skip("-"),
            let day = scanner.number(2), scanner.skip("T") || scanner.skip(" "), let hour = scanner.number(2),
            scanner.skip(":"), let minute = scanner.number(2), scanner.skip(":"), let second = scanner.number(2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var micros: Int64 = 0
        if scanner.skip(".") {
            var scale: Int64 = 100_000
            var any = false
            while let digit = scanner.digit() {
                micros += digit * scale
                scale /= 10
                any = true
            }
            guard any else { return nil }
        }
        var offset: Int64 = 0
        if scanner.skip("Z") {
        } else if let sign: Int64 = scanner.skip("+") ? 1 : scanner.skip("-") ? -1 : nil {
            guard let hours = scanner.number(2) else { return nil }
            var minutes: Int64 = 0
            var seconds: Int64 = 0
            if scanner.skip(":") {
                guard let m = scanner.number(2) else { return nil }
                minutes = m
                if scanner.skip(":") {
                    guard let s = scanner.number(2) else { return nil }
                    seconds = s
                }
            } else if let m = scanner.number(2) {
                minutes = m
            }
            offset = sign * (hours * 3600 + minutes * 60 + seconds)
        }
        guard scanner.atEnd else { return nil }
        return date(
            Fields(year: year, month: month, day: day, hour: hour, minute: minute, second: second, microsecond: micros),
            offsetSeconds: offset)
    }

    /// Bytes read left to right; every read either consumes what it matched or nothing.
    struct Scanner {
        let bytes: [UInt8]
        var index = 0

        init(_ text: String) { bytes = Array(text.utf8) }

        var atEnd: Bool { index == bytes.count }

        mutating func skip(_ character: Character) -> Bool {
            guard index < bytes.count, let ascii = character.asciiValue, bytes[index] == ascii else { return false }
            index += 1
            return true
        }

        mutating func digit() -> Int64? {
            guard index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 else { return nil }
            index += 1
            return Int64(bytes[index - 1] - 48)
        }

        /// Exactly `count` digits, or nothing.
        mutating func number(_ count: Int) -> Int64? {
            guard index + count <= bytes.count, bytes[index..<index + count].allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
                return nil
            }
            var value: Int64 = 0
            for _ in 0..<count { value = value * 10 + digit()! }
            return value
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date.
    public static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The proleptic Gregorian date `days` after 1970-01-01.
    public static func civilFromDays(_ days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
