/// The rows a statement returned, copied out of libpq's result so that it can be freed at once.
public struct PQResult: Sendable {
    /// Column names, in order.
    public let columns: [String]
    /// Values in text format, row by row; nil is SQL NULL.
    let values: [[String?]]
    /// Rows affected, for INSERT/UPDATE/DELETE (`PQcmdTuples`).
    public let affectedRows: Int
    /// The statement's name, repeated in decoding errors.
    let statement: String

    public var count: Int { values.count }
    public var isEmpty: Bool { values.isEmpty }

    public var rows: [PQRow] {
        let index = columnIndex
        return values.map { PQRow(values: $0, columnIndex: index, statement: statement) }
    }

    public var first: PQRow? { rows.first }

    var columnIndex: [String: Int] {
        var index: [String: Int] = [:]
        for (position, name) in columns.enumerated() where index[name] == nil { index[name] = position }
        return index
    }
}

/// One row of a result, read by column name.
public struct PQRow: Sendable {
    let values: [String?]
    let columnIndex: [String: Int]
    let statement: String

    /// Reads a non-NULL column; NULL or a missing column is an error naming the column.
    public func decode<T: PQDecodable>(_ column: String, as type: T.Type = T.self) throws -> T {
        guard let value = try decodeIfPresent(column, as: type) else {
            throw PQError(
                code: .decoding, message: "column \(column) is NULL, expected \(T.self)", statement: statement)
        }
        return value
    }

    /// Reads a column that may be NULL.
    public func decodeIfPresent<T: PQDecodable>(_ column: String, as type: T.Type = T.self) throws -> T? {
        guard let position = columnIndex[column] else {
            throw PQError(code: .decoding, message: "no column named \(column)", statement: statement)
        }
        guard let text = values[position] else { return nil }
        do {
            return try T(postgresText: text)
        } catch var error as PQError {
            error.message = "column \(column): \(error.message)"
            error.statement = statement
            throw error
        }
    }

    /// The raw text of a column, nil for NULL.
    public subscript(column: String) -> String? {
        guard let position = columnIndex[column] else { return nil }
        return values[position]
    }
}
