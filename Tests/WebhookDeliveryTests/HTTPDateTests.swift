import Foundation
import LibPQ
import PropertyBased
@testable import TestSupport
import Testing
@testable import WebhookDelivery

/// The one way dates are read and written: PostgreSQL text, ISO 8601, the webhook, HTTP dates.
@Suite("Dates in webhooks", .timeLimit(.minutes(4)))
struct HTTPDateTests {
    @Test("the webhook's timestamp keeps the stored milliseconds: .225 does not read as .224")
    func webhookTimestamp() {
        #expect(
            IntegrationConnectedEvent.timestamp(Date(timeIntervalSince1970: 1_705_314_600.225))
                == "2024-01-15T10:30:00.225Z")
    }

    @Test("HTTP dates in all three forms; two-digit years in the nearest century")
    func httpDates() {
        let expected = Date(timeIntervalSince1970: 784_111_777)  // 1994-11-06T08:49:37Z
        let now = Date(timeIntervalSince1970: 1_705_314_600)  // 2024
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT", now: now) == expected)
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT", now: now) == expected)
        #expect(HTTPDate.parse("Sun Nov  6 08:49:37 1994", now: now) == expected)
        #expect(HTTPDate.parse("Monday, 06-Nov-30 08:49:37 GMT", now: now).map(UTCTime.fields)?.year == 2030)
        for junk in [
            "", "soon", "Sun, 06 Nov 1994 08:49:37 CET", "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
        ] {
            #expect(HTTPDate.parse(junk, now: now) == nil, "\(junk)")
        }
        #expect(
            WebhookSender.parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now: expected.addingTimeInterval(-90))
                == .seconds(90))
    }
}
