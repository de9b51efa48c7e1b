import Foundation
@testable import JobQueue
import LibPQ
import Testing

/// How the side statements of a batch of outcomes are merged: rows into one statement per query,
/// and their times into one scalar parameter, the earliest. No database needed.
@Suite("Bound statements")
struct BoundStatementTests {
    static let rows = PQQuery("rows", "SELECT unnest($1::bigint[]), unnest($2::text[])")
    static let spanned = PQQuery("spanned", "SELECT unnest($1::bigint[]) WHERE $2::timestamptz < now()")
    static let plain = PQQuery("plain", "SELECT $1::int")

    static func texts(_ statement: PQStatement) -> [String?] {
        statement.bindings.map(\.postgresText)
    }

    @Test("rows of a query become one statement at the first row's place, columns as arrays in order")
    func rowsMerge() {
        let merged = BoundStatement.merged([
            .row(of: Self.rows, [Int64(1), "a"]),
            BoundStatement(Self.plain, [7]),
            .row(of: Self.rows, [Int64(2), nil as String?]),
        ])
        #expect(merged.map(\.query.name) == ["rows", "plain"])
        #expect(
            Self.texts(merged[0]) == [
                PQArray<String?>(["1", "2"]).postgresText, PQArray<String?>(["a", nil]).postgresText,
            ])
        #expect(Self.texts(merged[1]) == ["7"])
    }

    @Test("rows with a time each pass the earliest after their columns")
    func sinceMerges() {
        let t = Date(timeIntervalSince1970: 1_765_000_000)
        let merged = BoundStatement.merged([
            .row(of: Self.spanned, [Int64(1)], since: t),
            .row(of: Self.spanned, [Int64(2)], since: t.addingTimeInterval(-3600)),
            .row(of: Self.spanned, [Int64(3)], since: t.addingTimeInterval(7200)),
        ])
        #expect(merged.count == 1)
        #expect(
            Self.texts(merged[0]) == [
                PQArray<String?>(["1", "2", "3"]).postgresText, t.addingTimeInterval(-3600).postgresText,
            ])
        let one = BoundStatement.merged([.row(of: Self.spanned, [Int64(4)], since: t)])
        #expect(Self.texts(one[0]) == [PQArray<String?>(["4"]).postgresText, t.postgresText])
    }
}
