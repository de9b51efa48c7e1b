import ArgumentParser
import Foundation
import JobQueue
import Logging

/// The database flag, shared by every command.
struct DatabaseOptions: ParsableArguments {
    @Option(RunSettings.databaseURL) var databaseURL: String?

    var conninfo: String? {
        RunSettings.databaseURL.source(databaseURL, environment: ProcessInfo.processInfo.environment).value
    }
}

/// Logging flags, shared by every command.
struct LoggingOptions: ParsableArguments {
    @Option(RunSettings.logLevel) var logLevel: String?
    @Option(RunSettings.logFormat) var logFormat: String?

    func resolve() throws -> (Logger.Level, LogFormat) {
        var read = SettingsReader(environment: ProcessInfo.processInfo.environment)
        // The declarations check the words; these only map them.
        let level = try read.text(RunSettings.logLevel, logLevel).lowercased()
        let format = try read.text(RunSettings.logFormat, logFormat).lowercased()
        return (Logger.Level(rawValue: level)!, LogFormat(rawValue: format)!)
    }

    /// Sets up swift-log once; a bad value exits 2 with one line.
    func bootstrap() throws -> Logger {
        let (level, format) = try resolve()
        LogSetup.bootstrap(level: level, format: format)
        return Logger(label: "webhook-worker")
    }
}
