import Foundation

/// A value that can be bound as a statement parameter, in PostgreSQL's text format.
///
/// Parameters are always sent separately from the statement text (`PQexecParams`), never
/// interpolated into SQL. Cast in SQL where the server cannot infer the type (`$1::jsonb`).
public protocol PQEncodable: Sendable {
    /// The text form PostgreSQL parses, or nil for SQL NULL.
    var postgresText: String? { get }
}

/// A type that can be read from a result column in PostgreSQL's text format.
public protocol PQDecodable: Sendable {
    init(postgresText text: String) throws
}

extension Optional: PQEncodable where Wrapped: PQEncodable {
    public var postgresText: String? {
        switch self {
        case .none: nil
        case .some(let value): value.postgresText
        }
    }
}

extension String: PQEncodable, PQDecodable {
    public var postgresText: String? { self }
    public init(postgresText text: String) { self = text }
}

extension Substring: PQEncodable {
    public var postgresText: String? { String(self) }
}

extension Int: PQEncodable, PQDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText text: String) throws {
        guard let value = Int(text) else { throw PQError.decoding(text, as: "Int") }
        self = value
    }
}

extension Int64: PQEncodable, PQDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText text: String) throws {
        guard let value = Int64(text) else { throw PQError.decoding(text, as: "Int64") }
        self = value
    }
}

extension Int32: PQEncodable, PQDecodable {
    public var postgresText: String? { String(self) }
    public init(postgresText text: String) throws {
        guard let value = Int32(text) else { throw PQError.decoding(text, as: "Int32") }
        self = value
    }
}

extension Double: PQEncodable, PQDecodable {
    public var postgresText: String? {
        if isNaN { return "NaN" }
        if isInfinite { return self > 0 ? "Infinity" : "-Infinity" }
        return String(self)
    }
    public init(postgresText text: String) throws {
        switch text {
        case "NaN": self = .nan
        case "Infinity": self = .infinity
        case "-Infinity": self = -.infinity
        default:
            guard let value = Double(text) else { throw PQError.decoding(text, as: "Double") }
            self = value
        }
    }
}

extension Bool: PQEncodable, PQDecodable {
    public var postgresText: String? { self ? "t" : "f" }
    public init(postgresText text: String) throws {
        switch text {
        case "t", "true": self = true
        case "f", "false": self = false
        default: throw PQError.decoding(text, as: "Bool")
        }
    }
}

extension UUID: PQEncodable, PQDecodable {
    public var postgresText: String? { lowercasedText }
    public init(postgresText text: String) throws {
        guard let value = UUID(text: text) else { throw PQError.decoding(text, as: "UUID") }
        self = value
    }
}

extension Date: PQEncodable, PQDecodable {
    /// Sent as an ISO 8601 instant in UTC with microseconds, which `timestamptz` parses exactly.
    /// Read as the connection's session settings (`DateStyle=ISO`, `TimeZone=UTC`) write it,
    /// e.g. `2024-01-15 10:30:00.123456+00`.
    public var postgresText: String? { UTCTime.iso8601(self, fractionDigits: 6) }
    public init(postgresText text: String) throws {
        guard let value = UTCTime.parseISO8601(text) else { throw PQError.decoding(text, as: "Date") }
        self = value
    }
}

/// JSON carried as its exact bytes; bind it with a `::jsonb` or `::json` cast.
public struct PQJSON: PQEncodable, PQDecodable, Hashable {
    public var bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ text: String) { self.bytes = Array(text.utf8) }
    public init(postgresText text: String) { self.bytes = Array(text.utf8) }
    public var postgresText: String? { String(decoding: bytes, as: UTF8.self) }
    public var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// An interval, bound as a number of microseconds (`$1::interval` accepts `"1500000 microseconds"`).
public struct PQInterval: PQEncodable {
    public var duration: Duration
    public init(_ duration: Duration) { self.duration = duration }
    public var postgresText: String? {
        let (seconds, attoseconds) = duration.components
        return "\(seconds * 1_000_000 + attoseconds / 1_000_000_000_000) microseconds"
    }
}

/// A one-dimensional array literal for `$1::bigint[]`, `$1::text[]` and the like.
public struct PQArray<Element: PQEncodable>: PQEncodable {
    public var elements: [Element]
    public init(_ elements: [Element]) { self.elements = elements }
    public var postgresText: String? {
        // By index: `enumerated()` here, unspecialized (the parameter is an `any PQEncodable`),
        // looked its iterator's type up at run time for every array.
        var texts: [String?] = []
        texts.reserveCapacity(elements.count)
        for index in elements.indices { texts.append(elements[index].postgresText) }
        return arrayLiteral(texts)
    }
}

/// A `text[]` parameter of values already in PostgreSQL's text form (nil: NULL), such as the
/// columns of rows merged into one statement: ``PQArray`` without its generic element.
public struct PQTextArray: PQEncodable {
    public var elements: [String?]
    public init(_ elements: [String?]) { self.elements = elements }
    public var postgresText: String? { arrayLiteral(elements) }
}

/// `{"a","b\\"c",NULL}`: every element quoted, quotes and backslashes escaped. Built as UTF-8
/// bytes: appending to a String scalar by scalar cost 3 % of the worker's CPU at full speed.
private func arrayLiteral(_ elements: [String?]) -> String {
    var text: [UInt8] = [UInt8(ascii: "{")]
    for index in elements.indices {
        if index > 0 { text.append(UInt8(ascii: ",")) }
        guard let value = elements[index] else {
            text.append(contentsOf: "NULL".utf8)
            continue
        }
        text.append(UInt8(ascii: "\""))
        appendArrayElement(value, to: &text)
        text.append(UInt8(ascii: "\""))
    }
    text.append(UInt8(ascii: "}"))
    return String(decoding: text, as: UTF8.self)
}

/// `value`'s bytes with a backslash before each quote and backslash, copied a run at a time
/// between them: byte by byte, the JSON of the deliveries' bodies (quotes throughout) cost
/// 5 % of the worker's CPU.
private func appendArrayElement(_ value: String, to text: inout [UInt8]) {
    let copied: Void? = value.utf8.withContiguousStorageIfAvailable { bytes in
        var start = 0
        for index in bytes.indices where bytes[index] == UInt8(ascii: "\"") || bytes[index] == UInt8(ascii: "\\") {
            text.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
            text.append(UInt8(ascii: "\\"))
            start = index
        }
        text.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
    }
    guard copied == nil else { return }
    for byte in value.utf8 {
        if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { text.append(UInt8(ascii: "\\")) }
        text.append(byte)
    }
}

extension PQError {
    static func decoding(_ text: String, as type: String) -> PQError {
        // The value itself is left out: it may be a secret or a payload.
        PQError(code: .decoding, message: "a \(text.utf8.count)-byte value is not a valid \(type)")
    }
}
