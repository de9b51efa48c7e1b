import Foundation
import LibPQ

/// HTTP dates (RFC 9110, section 5.6.7), read as `Retry-After` may carry them: the IMF-fixdate
/// `Sun, 06 Nov 1994 08:49:37 GMT`, and the obsolete RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT`
/// and asctime `Sun Nov  6 08:49:37 1994` forms. Always GMT.
enum HTTPDate {
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// The instant, or nil when `text` is none of the three forms.
    /// - Parameter now: decides the century of an RFC 850 two-digit year.
    static func parse(_ text: String, now: Date = Date()) -> Date? {
        let words = text.split(separator: " ").map(String.init)
        let day: Int64?, month: Int64?, year: Int64?, time: String
        switch words.count {
        case 6 where words[0].hasSuffix(",") && ["GMT", "UTC"].contains(words[5]):  // IMF-fixdate
            (day, month, year, time) = (
                number(words[1], digits: 1...2), monthNumber(words[2]), number(words[3], digits: 4...4), words[4]
            )
        case 4 where words[0].hasSuffix(",") && ["GMT", "UTC"].contains(words[3]):  // RFC 850
            let parts = words[1].split(separator: "-").map(String.init)
            guard parts.count == 3, let short = number(parts[2], digits: 2...2) else { return nil }
            (day, month, time) = (number(parts[0], digits: 1...2), monthNumber(parts[1]), words[2])
            // A two-digit year more than 50 years ahead is the most recent past one (RFC 9110).
            let current = UTCTime.fields(of: now).year
            let candidate = current - current % 100 + short
            year = candidate > current + 50 ? candidate - 100 : candidate
        case 5:  // asctime
            (day, month, year, time) = (
                number(words[2], digits: 1...2), monthNumber(words[1]), number(words[4], digits: 4...4), words[3]
            )
        default:
            return nil
        }
        let clock = time.split(separator: ":", omittingEmptySubsequences: false).map {
            number(String($0), digits: 2...2)
        }
        guard let day, let month, let year, clock.count == 3, let hour = clock[0], let minute = clock[1],
            let second = clock[2],
            (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        return UTCTime.date(.init(year: year, month: month, day: day, hour: hour, minute: minute, second: second))
    }

    private static func monthNumber(_ name: String) -> Int64? {
        months.firstIndex(of: name).map { Int64($0 + 1) }
    }

    private static func number(_ text: String, digits: ClosedRange<Int>) -> Int64? {
        guard digits.contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int64(text)
    }
}
