import Foundation
import LibPQ

/// A record as commands print it: column names and values (nil prints as `-`, or JSON `null`).
typealias Fields = [String: Any?]

/// Prints rows as a table sized to the terminal, or as JSON for scripts.
///
/// Values print as PostgreSQL writes them in JSON, so that output reads the same whether a
/// record came from a domain type or straight from SQL: times in UTC with up to microseconds
/// (`2024-01-15T10:30:00.12+00:00`), UUIDs in lower case, JSON payloads as JSON.
struct Output {
    var json: Bool

    /// Prints `rows` (objects with the same keys) under `columns`; in JSON, an array of objects.
    func list(_ rows: [Fields], columns: [String]) {
        if json {
            printJSON(rows.map(Self.present))
        } else {
            print(
                Table(columns: columns, rows: rows.map { row in columns.map { Self.text(row[$0] ?? nil) } }).render(
                    width: Self.terminalWidth))
        }
    }

    /// Prints one object: `key: value` lines, or a JSON object.
    func object(_ object: Fields, keys: [String]) {
        if json {
            printJSON(Self.present(object))
        } else {
            let width = keys.map(\.count).max() ?? 0
            for key in keys {
                print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + Self.text(object[key] ?? nil))
            }
        }
    }

    /// `fields` with nil as `NSNull`, for JSON.
    static func present(_ fields: Fields) -> [String: Any] {
        fields.mapValues { $0 ?? NSNull() }
    }

    /// A time as PostgreSQL writes a `timestamptz` in JSON, the session being in UTC.
    static func timestamp(_ date: Date) -> String {
        // `postgresText` is `2024-01-15T10:30:00.120000Z`: drop the fraction's trailing zeros.
        var text = date.postgresText ?? ""
        text.removeLast()
        while text.hasSuffix("0") { text.removeLast() }
        if text.hasSuffix(".") { text.removeLast() }
        return text + "+00:00"
    }

    /// A JSON document as a value `JSONSerialization` writes, or its text when it does not parse.
    static func document(_ json: PQJSON) -> Any {
        (try? JSONSerialization.jsonObject(with: Data(json.bytes), options: [.fragmentsAllowed])) ?? json.text
    }

    func printJSON(_ value: Any) {
        let data =
            (try? JSONSerialization.data(
                withJSONObject: Self.jsonSafe(value), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]))
            ?? Data("null".utf8)
        print(String(decoding: data, as: UTF8.self))
    }

    static func jsonSafe(_ value: Any) -> Any {
        switch value {
        case let date as Date: return timestamp(date)
        case let uuid as UUID: return uuid.lowercasedText
        case let json as PQJSON: return document(json)
        case let number as Double: return NSNumber(value: number)
        case let array as [Any]: return array.map(jsonSafe)
        case let object as [String: Any]: return object.mapValues(jsonSafe)
        case Optional<Any>.none: return NSNull()
        default: return value
        }
    }

    static func text(_ value: Any?) -> String {
        switch value {
        case nil, is NSNull: return "-"
        case let date as Date: return timestamp(date)
        case let uuid as UUID: return uuid.lowercasedText
        case let number as Double: return NSNumber(value: number).description
        case let json as PQJSON:
            let data = try? JSONSerialization.data(
                withJSONObject: document(json), options: [.sortedKeys, .fragmentsAllowed])
            return data.map { String(decoding: $0, as: UTF8.self) } ?? json.text
        case let text as String: return text.replacingOccurrences(of: "\n", with: " ")
        default: return "\(value!)"
        }
    }

    static var terminalWidth: Int {
        if let columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init), columns > 20 {
            return columns
        }
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 20 { return Int(size.ws_col) }
        return 120
    }
}

/// A plain-text table whose widest columns are cut to fit the width.
struct Table {
    let columns: [String]
    let rows: [[String]]

    func render(width: Int) -> String {
        var widths = columns.indices.map { index in
            max(columns[index].count, rows.map { $0[index].count }.max() ?? 0)
        }
        let separators = 2 * (columns.count - 1)
        // Ids are never cut: a cut id cannot be pasted into the next command.
        let cuttable = columns.indices.filter { columns[$0] != "id" && !columns[$0].hasSuffix("_id") }
        while widths.reduce(0, +) + separators > width,
            let widest = cuttable.max(by: { widths[$0] < widths[$1] }),
            widths[widest] > 8
        {
            widths[widest] -= 1
        }
        func line(_ cells: [String]) -> String {
            cells.indices.map { index in
                let cell = cells[index]
                let cut = cell.count > widths[index] ? String(cell.prefix(widths[index] - 1)) + "…" : cell
                return index == cells.count - 1
                    ? cut : cut.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(columns), line(widths.map { String(repeating: "-", count: $0) })] + rows.map(line))
            .joined(separator: "\n")
    }
}
