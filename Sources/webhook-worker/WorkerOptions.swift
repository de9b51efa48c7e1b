import ArgumentParser
import Foundation
import JobQueue
import Logging

/// The database flag, shared by every command.
struct DatabaseOptions: ParsableArguments {
    @Option(
        name: .customLong("database-url"),
        help: "PostgreSQL URI or key=value conninfo. Env: DATABASE_URL. Default: libpq's PG* variables.")
    var databaseURL: String?

    var conninfo: String? {
        databaseURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// Logging flags, shared by every command.
struct LoggingOptions: ParsableArguments {
    @Option(
        name: .customLong("log-level"),
        help: "trace, debug, info, notice, warning, error, critical. Env: LOG_LEVEL. Default: info.")
    var logLevel: String?

    @Option(
        name: .customLong("log-format"), help: "text or json (one object per line). Env: LOG_FORMAT. Default: text.")
    var logFormat: String?

    func resolve() throws -> (Logger.Level, LogFormat) {
        let env = ProcessInfo.processInfo.environment
        let level = SettingSource("log-level", "LOG_LEVEL", logLevel, env: env)
        let format = SettingSource("log-format", "LOG_FORMAT", logFormat, env: env)
        guard let parsedLevel = Logger.Level(rawValue: (level.value ?? "info").lowercased()) else {
            throw SettingError(
                description:
                    "invalid \(level.name) '\(level.value ?? "")': "
                    + "expected trace, debug, info, notice, warning, error or critical"
            )
        }
        guard let parsedFormat = LogFormat(rawValue: (format.value ?? "text").lowercased()) else {
            throw SettingError(description: "invalid \(format.name) '\(format.value ?? "")': expected text or json")
        }
        return (parsedLevel, parsedFormat)
    }

    /// Sets up swift-log once; a bad value exits 2 with one line.
    func bootstrap() throws -> Logger {
        let (level, format) = try resolve()
        LogSetup.bootstrap(level: level, format: format)
        return Logger(label: "webhook-worker")
    }
}
