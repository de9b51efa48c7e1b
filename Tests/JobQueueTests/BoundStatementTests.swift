import Foundation
@testable import JobQueue
import LibPQ
import Testing

/// How the side statements of a batch of outcomes are merged: rows into one statement per query,
/// and their spans of time into two scalar parameters. No database needed.
@Suite("Bound statements")
struct BoundStatementTests {
    static let rows = PQQuery("rows", "SELECT unnest($1::bigint[]), unnest($2::text[])")
    static let spanned = PQQuery("spanned", "SELECT unnest($1::bigint[]) WHERE $2::timestamptz < $3::timestamptz")
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

    @Test("rows with spans of time pass the earliest start and the latest end after their columns")
    func spansMerge() {
        let t = Date(timeIntervalSince1970: 1_765_000_000)
        let merged = BoundStatement.merged([
            .row(of: Self.spanned, [Int64(1)], within: t.addingTimeInterval(-60)..<t.addingTimeInterval(60)),
            .row(of: Self.spanned, [Int64(2)], within: t.addingTimeInterval(-3600)..<t),
            .row(of: Self.spanned, [Int64(3)], within: t..<t.addingTimeInterval(7200)),
        ])
        #expect(merged.count == 1)
        #expect(
            Self.texts(merged[0]) == [
                PQArray<String?>(["1", "2", "3"]).postgresText,
                t.addingTimeInterval(-3600).postgresText, t.addingTimeInterval(7200).postgresText,
            ])
        let one = BoundStatement.merged([.row(of: Self.spanned, [Int64(4)], within: t..<t.addingTimeInterval(1))])
        #expect(Self.texts(one[0]).count == 3)
    }
}
