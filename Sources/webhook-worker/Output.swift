import Foundation

/// Prints rows as a table sized to the terminal, or as JSON for scripts.
struct Output {
    var json: Bool

    /// Prints `rows` (objects with the same keys) under `columns`; in JSON, an array of objects.
    func list(_ rows: [[String: Any]], columns: [String]) {
        if json {
            printJSON(rows)
        } else {
            print(Table(columns: columns, rows: rows.map { row in columns.map { Self.text(row[$0]) } }).render(width: Self.terminalWidth))
        }
    }

    /// Prints one object: `key: value` lines, or a JSON object.
    func object(_ object: [String: Any], keys: [String]) {
        if json {
            printJSON(object)
        } else {
            let width = keys.map(\.count).max() ?? 0
            for key in keys {
                print(key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + Self.text(object[key]))
            }
        }
    }

    func printJSON(_ value: Any) {
        let data = (try? JSONSerialization.data(
            withJSONObject: Self.jsonSafe(value), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]))
            ?? Data("null".utf8)
        print(String(decoding: data, as: UTF8.self))
    }

    static func jsonSafe(_ value: Any) -> Any {
        switch value {
        case let date as Date: return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
        case let array as [Any]: return array.map(jsonSafe)
        case let object as [String: Any]: return object.mapValues(jsonSafe)
        case Optional<Any>.none: return NSNull()
        default: return value
        }
    }

    static func text(_ value: Any?) -> String {
        switch value {
        case nil, is NSNull: return "-"
        case let date as Date:
            return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: false))
        case let text as String: return text.replacingOccurrences(of: "\n", with: " ")
        default: return "\(value!)"
        }
    }

    static var terminalWidth: Int {
        if let columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init), columns > 20 { return columns }
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
        while widths.reduce(0, +) + separators > width, let widest = widths.indices.max(by: { widths[$0] < widths[$1] }),
            widths[widest] > 8
        {
            widths[widest] -= 1
        }
        func line(_ cells: [String]) -> String {
            cells.indices.map { index in
                let cell = cells[index]
                let cut = cell.count > widths[index] ? String(cell.prefix(widths[index] - 1)) + "…" : cell
                return index == cells.count - 1 ? cut : cut.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(columns), line(widths.map { String(repeating: "-", count: $0) })] + rows.map(line))
            .joined(separator: "\n")
    }
}
