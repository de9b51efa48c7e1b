import Foundation
import LibPQ
import PropertyBased
@testable import TestSupport
import Testing

/// The one way dates are read and written: PostgreSQL text, ISO 8601, the webhook, HTTP dates.
@Suite("Dates as text", .timeLimit(.minutes(4)))
struct UTCTimeTests {
    @Test("ISO 8601 with 0, 3 and 6 digits; milliseconds are truncated, not rounded")
    func formatting() {
        let date = Date(timeIntervalSince1970: 1_705_314_600.123_9)
        #expect(UTCTime.iso8601(date, fractionDigits: 0) == "2024-01-15T10:30:00Z")
        #expect(UTCTime.iso8601(date) == "2024-01-15T10:30:00.123Z")
        #expect(UTCTime.iso8601(date, fractionDigits: 6) == "2024-01-15T10:30:00.123900Z")
        #expect(UTCTime.iso8601(Date(timeIntervalSince1970: -1.5), fractionDigits: 3) == "1969-12-31T23:59:58.500Z")
        #expect(UTCTime.iso8601(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29T00:00:00.000Z")
        // A stored .225 must not read as .224.
        #expect(UTCTime.iso8601(Date(timeIntervalSince1970: 1_705_314_600.225)) == "2024-01-15T10:30:00.225Z")
    }

    @Test(
        "PostgreSQL's and ISO 8601's forms parse to the same instant",
        arguments: [
            "2024-01-15 10:30:00.5+00", "2024-01-15T10:30:00.500Z", "2024-01-15T12:30:00.5+02:00",
            "2024-01-15T12:30:00.5+0200",
            "2024-01-15 05:00:00.5-05:30", "2024-01-15T10:30:00.500000", "2024-01-15 10:30:00.5+00:00:00",
        ])
    func parsing(text: String) {
        #expect(UTCTime.parseISO8601(text) == Date(timeIntervalSince1970: 1_705_314_600.5), "\(text)")
    }

    @Test(
        "junk does not parse",
        arguments: [
            "", "2024-01-15", "2024-13-01T00:00:00Z", "2024-01-15T10:30:00.Z", "2024-01-15T10:30Z",
            "2024-01-15T10:30:00+1", "2024-01-15T10:30:00Zjunk", "infinity",
        ])
    func junk(text: String) {
        #expect(UTCTime.parseISO8601(text) == nil, "\(text)")
    }

    @Test("any instant round-trips through the microsecond form, as PostgreSQL binds it")
    func roundTrip() async {
        await propertyCheck(count: 500, input: Gen.int(in: -4_000_000_000_000_000...8_000_000_000_000_000)) { micros in
            let date = Date(timeIntervalSince1970: Double(micros) / 1_000_000)
            let text = UTCTime.iso8601(date, fractionDigits: 6)
            #expect(UTCTime.parseISO8601(text).map { abs($0.timeIntervalSince(date)) < 0.000_001 } == true, "\(text)")
        }
    }

    @Test("the ISO 8601 text is printf's, for any instant and any number of digits")
    func sameAsPrintf() {
        let seed = UInt64.random(in: 1...UInt64.max)
        var random = SeededGenerator(seed: seed)
        for _ in 0..<2000 {
            // From year 1 to year 9999, and a few either side of them.
            let micros = Int64.random(in: -62_200_000_000_000_000...253_500_000_000_000_000, using: &random)
            let digits = Int.random(in: 0...6, using: &random)
            let date = Date(timeIntervalSince1970: Double(micros) / 1_000_000)
            let f = UTCTime.fields(of: date)
            var scale: Int64 = 1
            for _ in digits..<6 { scale *= 10 }
            var expected = String(
                format: "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld", f.year, f.month, f.day, f.hour, f.minute,
                f.second)
            if digits > 0 { expected += String(format: ".%0\(digits)lld", f.microsecond / scale) }
            expected += "Z"
            let text = UTCTime.iso8601(date, fractionDigits: digits)
            guard text == expected else {
                Issue.record("seed \(seed): \(micros) µs, \(digits) digits: \(text), printf writes \(expected)")
                return
            }
        }
    }
}
