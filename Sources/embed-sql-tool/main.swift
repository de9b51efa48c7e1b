// Writes one Swift source that carries a module's SQL, for the EmbedSQL build-tool plugin:
//
//   embed-sql-tool OUTPUT FOLDER
//
// FOLDER is the module's folder of sql/ (sql/job_queue/, sql/webhook_delivery/):
// - its numbered migrations, NNN_name.sql, become `EmbeddedSQL.migrations`, in version order,
//   each the file's text without its last newline;
// - its statement files, statements/*.sql, are cut at lines `-- name: someName`, and each
//   section becomes `EmbeddedSQL.someName`: the text up to the next such line, its comment
//   lines (`--` at the start of a line) and surrounding blank lines left out.
// The plugin runs it when one of those files changes, is added or is removed.
import Foundation

struct Failure: Error, CustomStringConvertible {
    let description: String
}

/// A Swift string literal that holds `text` exactly.
func literal(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7f {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

func sqlFiles(in directory: URL) throws -> [URL] {
    guard FileManager.default.fileExists(atPath: directory.path) else { return [] }
    return try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
        .filter { $0.pathExtension == "sql" }
        .sorted { $0.lastPathComponent < $1.lastPathComponent }
}

/// `NNN_name.sql` -> (NNN, "NNN_name"); nil for other names.
func migrationName(_ file: URL) -> (version: Int, name: String)? {
    let name = file.deletingPathExtension().lastPathComponent
    let digits = name.prefix { $0.isASCII && $0.isNumber }
    guard digits.count == 3, name.dropFirst(3).first == "_", let version = Int(digits) else { return nil }
    return (version, name)
}

/// The named sections of a statement file, in order.
func statements(in file: URL) throws -> [(name: String, sql: String)] {
    let text = try String(contentsOf: file, encoding: .utf8)
    var sections: [(name: String, lines: [String])] = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        if line.hasPrefix("-- name:") {
            let name = line.dropFirst("-- name:".count).trimmingCharacters(in: .whitespaces)
            guard let first = name.first, first.isLetter,
                name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) })
            else { throw Failure(description: "\(file.path): '\(line)' does not name a statement") }
            sections.append((name, []))
        } else if !line.hasPrefix("--") {
            guard !sections.isEmpty else {
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                throw Failure(description: "\(file.path): SQL before the first '-- name:' line")
            }
            sections[sections.count - 1].lines.append(String(line))
        }
    }
    return try sections.map { section in
        var lines = section.lines
        while lines.first?.trimmingCharacters(in: .whitespaces).isEmpty == true { lines.removeFirst() }
        while lines.last?.trimmingCharacters(in: .whitespaces).isEmpty == true { lines.removeLast() }
        guard !lines.isEmpty else { throw Failure(description: "\(file.path): statement \(section.name) is empty") }
        return (section.name, lines.joined(separator: "\n"))
    }
}

func generate(folder: URL) throws -> String {
    var migrations: [(version: Int, name: String, sql: String)] = []
    for file in try sqlFiles(in: folder) {
        guard let numbered = migrationName(file) else { continue }
        if let clash = migrations.first(where: { $0.version == numbered.version }) {
            throw Failure(description: "\(file.path): version \(numbered.version) is also \(clash.name)")
        }
        var sql = try String(contentsOf: file, encoding: .utf8)
        if sql.hasSuffix("\n") { sql.removeLast() }
        migrations.append((numbered.version, numbered.name, sql))
    }
    var named: [(name: String, sql: String, file: String)] = []
    for file in try sqlFiles(in: folder.appendingPathComponent("statements")) {
        for statement in try statements(in: file) {
            if let clash = named.first(where: { $0.name == statement.name }) {
                throw Failure(description: "\(file.path): \(statement.name) is also in \(clash.file)")
            }
            named.append((statement.name, statement.sql, file.lastPathComponent))
        }
    }
    var out = """
        // Generated at build time by the EmbedSQL plugin from \(folder.lastPathComponent)/ of sql/.
        // Not in git; edit the .sql files.

        /// The SQL of this module's folder of sql/, compiled in.
        enum EmbeddedSQL {
            /// The numbered migrations (NNN_name.sql), in version order.
            static let migrations: [(version: Int, name: String, sql: String)] = [

        """
    for migration in migrations {
        out += "        (\(migration.version), \(literal(migration.name)), \(literal(migration.sql))),\n"
    }
    out += "    ]\n"
    for statement in named {
        out += "\n    /// `-- name: \(statement.name)` in statements/\(statement.file).\n"
        out += "    static let \(statement.name) = \(literal(statement.sql))\n"
    }
    out += "}\n"
    return out
}

let arguments = CommandLine.arguments
guard arguments.count == 3 else {
    FileHandle.standardError.write(Data("usage: embed-sql-tool OUTPUT FOLDER\n".utf8))
    exit(2)
}
do {
    let output = URL(fileURLWithPath: arguments[1])
    let text = try generate(folder: URL(fileURLWithPath: arguments[2]))
    try text.write(to: output, atomically: true, encoding: .utf8)
} catch {
    FileHandle.standardError.write(Data("embed-sql-tool: \(error)\n".utf8))
    exit(1)
}
