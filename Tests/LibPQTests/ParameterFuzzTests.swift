import Foundation
import LibPQ
import PropertyBased
@testable import TestSupport
import Testing

@Suite("LibPQ parameters under fuzzing", .timeLimit(.minutes(4)))
struct ParameterFuzzTests {
    /// Up to 20 of ``AwkwardText/pieces``, joined.
    static let text = Generator<String, Shrink.None<String>>(run: { rng in
        (0..<Int.random(in: 0...20, using: &rng)).map { _ in AwkwardText.pieces.randomElement(using: &rng)! }.joined()
    })

    @Test("any text and any list of texts round-trip through PostgreSQL parameters, as PQArray and PQTextArray")
    func textRoundTrip() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            let query = PQQuery(
                "roundTripText",
                """
                SELECT $1::text AS t, cardinality($2::text[]) AS n, array_to_json($2::text[])::text AS array,
                       array_to_json($3::text[])::text AS text_array
                """)
            await propertyCheck(count: 300, input: Self.text) { text in
                let list = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                let row = try #require(
                    try await connection.query(query, [text, PQArray(list), PQTextArray(list)]).first)
                // Byte for byte: String's == takes canonically equivalent text (e + U+0301, é) for equal.
                #expect(Array(try row.decode("t", as: String.self).utf8) == Array(text.utf8))
                #expect(try row.decode("n", as: Int.self) == list.count)
                // Each element as it was sent, read back through JSON, from both kinds of array.
                for column in ["array", "text_array"] {
                    let elements = try row.decode(column, as: String.self)
                    let decoded = try JSONDecoder().decode([String].self, from: Data(elements.utf8))
                    #expect(decoded.map { Array($0.utf8) } == list.map { Array($0.utf8) }, "\(column)")
                }
            }
            await connection.close()
        }
    }
}
