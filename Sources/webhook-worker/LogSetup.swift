import Foundation
import LibPQ
import Logging
import Synchronization

enum LogFormat: String {
    case text
    case json
}

enum LogSetup {
    static func bootstrap(level: Logger.Level, format: LogFormat) {
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler =
                switch format {
                case .text: TextLogHandler(label: label)
                case .json: JSONLogHandler(label: label)
                }
            handler.logLevel = level
            return handler
        }
    }
}

/// What both handlers share: the level, the metadata (set without formatting anything), and
/// one line at a time on standard error.
protocol LineLogHandler: LogHandler {}

private let standardErrorLines = Mutex(())

extension LineLogHandler {
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The handler's metadata, then the provider's, then the event's: later keys win.
    func merged(with event: LogEvent) -> Logger.Metadata {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        return merged
    }

    func write(_ line: Data) {
        standardErrorLines.withLock { _ in FileHandle.standardError.write(line) }
    }
}

/// swift-log's `StreamLogHandler` line on standard error (`<time> <level> <label>: <metadata>
/// [<source>] <message>`, the time in UTC), with the metadata formatted when a line is written.
/// The stream handler formats it whenever a key is set: each job sets several, and at full speed
/// that cost about 5 % of the worker's CPU even with nothing logged.
struct TextLogHandler: LineLogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String) { self.label = label }

    func log(event: LogEvent) {
        let pretty = merged(with: event).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            .joined(separator: " ")
        let time = UTCTime.iso8601(Date(), fractionDigits: 0)
        let metadata = pretty.isEmpty ? "" : " " + pretty
        write(Data("\(time) \(event.level) \(label):\(metadata) [\(event.source)] \(event.message)\n".utf8))
    }
}

/// One JSON object per line on standard error: `timestamp`, `level`, `message`, `label`, and
/// the metadata's keys at the top level (`job.id`, `delivery.id`, ...).
struct JSONLogHandler: LineLogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String) { self.label = label }

    func log(event: LogEvent) {
        var object: [String: Any] = [
            "timestamp": UTCTime.iso8601(Date(), fractionDigits: 3),
            "level": event.level.rawValue,
            "message": "\(event.message)",
            "label": label,
        ]
        for (key, value) in merged(with: event) where object[key] == nil { object[key] = Self.plain(value) }
        guard
            var line = try? JSONSerialization.data(
                withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return }
        line.append(0x0A)
        write(line)
    }

    private static func plain(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let text): text
        case .stringConvertible(let value): "\(value)"
        case .array(let values): values.map(plain)
        case .dictionary(let values): values.mapValues(plain)
        }
    }
}
