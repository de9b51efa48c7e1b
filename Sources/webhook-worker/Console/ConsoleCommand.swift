import ArgumentParser
import Foundation
import JobQueue
import LibPQ
import Logging
import ServiceLifecycle
import UnixSignals

/// The console's settings, shared by `console` and `run --console`.
struct ConsoleSettings {
    var host: String
    var port: Int
    var readOnly: Bool
    var tokens: ConsoleTokens
    /// The host names answered besides the loopback ones and `host`.
    var hosts: ConsoleHosts

    /// The longest one statement of the console may run, and may wait for a lock: a page or an
    /// action facing a table locked elsewhere (a migration, a long `VACUUM FULL`) fails with an
    /// error the operator sees instead of hanging with a connection held. (`run --console` shares
    /// the replica's pool, which has the worker's own timeouts.)
    static let statementTimeout = Duration.seconds(30)
    static let lockTimeout = Duration.seconds(5)

    /// The pool of `webhook-worker console`: four connections under ``statementTimeout`` and
    /// ``lockTimeout``, set per session, or per transaction behind a transaction pooler
    /// (`preparedStatements` false).
    static func databasePool(conninfo: String?, preparedStatements: Bool) -> PQConnectionPool.Configuration {
        let settings = [
            ("statement_timeout", statementTimeout.totalMilliseconds), ("lock_timeout", lockTimeout.totalMilliseconds),
        ]
        return .init(
            conninfo: conninfo, maxConnections: 4, applicationName: "webhook-worker console",
            sessionSetup: preparedStatements ? settings.map { "SET \($0.0) = \($0.1)" }.joined(separator: "; ") : nil,
            preparedStatements: preparedStatements,
            transactionSetup: preparedStatements
                ? nil : "SELECT " + settings.map { "set_config('\($0.0)', '\($0.1)', true)" }.joined(separator: ", "))
    }

    /// The names of `--allowed-host` (`flags`, repeatable) and `WORKER_CONSOLE_ALLOWED_HOSTS`
    /// (comma-separated): both add.
    static func hosts(bound host: String, flags: [String], environment env: [String: String]) throws -> ConsoleHosts {
        let setting = ConsoleCommandSettings.allowedHost
        let listed =
            try ConsoleHosts.parse(flags, setting: "--\(setting.flag)")
            + ConsoleHosts.parse([env[setting.variable] ?? ""], setting: setting.variable)
        return ConsoleHosts(bound: host, listed: listed)
    }

    /// Reads `WORKER_CONSOLE_TOKEN` (environment only: secrets stay out of argv) and refuses a
    /// non-loopback address without it.
    static func tokens(host: String, environment env: [String: String], flag: String) throws -> ConsoleTokens {
        let tokens = try ConsoleTokens(env[ConsoleCommandSettings.token.variable])
        if tokens.isEmpty && !ConsoleServer.isLoopback(host) {
            throw SettingError(
                description:
                    """
                    the console would listen on \(host) (\(flag)), which is not a loopback address, without \
                    WORKER_CONSOLE_TOKEN: set a token (name:secret pairs, comma-separated) or listen on 127.0.0.1
                    """)
        }
        return tokens
    }
}

struct ConsoleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Serve the operator web console (overview, deliveries, endpoints, dead letters, jobs).",
        discussion: """
            Pages under /console read and act through the same operations as the other commands. \
            WORKER_CONSOLE_TOKEN (environment only) holds name:secret pairs separated by commas, a bare \
            secret being named operator; with it, every page and action needs a token (Authorization: \
            Bearer, or the login form). Without it the console listens on a loopback address only. \
            Only loopback names, the --host address and the names of --allowed-host are answered \
            (others get 421: DNS rebinding). Every action is logged and recorded in \
            webhook_worker.console_audit.
            """)

    @Option(ConsoleCommandSettings.host) var host: String?
    @Option(ConsoleCommandSettings.port) var port: String?
    @Flag(ConsoleCommandSettings.readOnly) var readOnly: Bool
    @Option(ConsoleCommandSettings.allowedHost) var allowedHosts: [String]
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var logging: LoggingOptions

    func settings(environment env: [String: String]) throws -> ConsoleSettings {
        var read = SettingsReader(environment: env)
        let host = try read.text(ConsoleCommandSettings.host, host)
        let port = try read.integer(ConsoleCommandSettings.port, port)
        let readOnly = try read.toggle(ConsoleCommandSettings.readOnly, flagSet: readOnly)
        return ConsoleSettings(
            host: host, port: port, readOnly: readOnly,
            tokens: try ConsoleSettings.tokens(host: host, environment: env, flag: ConsoleCommandSettings.host.name),
            hosts: try ConsoleSettings.hosts(bound: host, flags: allowedHosts, environment: env))
    }

    func run() async throws {
        let logger = try logging.bootstrap()
        let settings = try self.settings(environment: ProcessInfo.processInfo.environment)
        // One line and exit 1 when the database cannot be reached, as every command.
        await (try await connectOrExit(database.conninfo)).close()
        let prepared = try SettingSource(
            "prepared-statements", "WORKER_PREPARED_STATEMENTS", nil, env: ProcessInfo.processInfo.environment
        ).onOff(default: true)
        let pool = PQConnectionPool(
            configuration: ConsoleSettings.databasePool(conninfo: database.conninfo, preparedStatements: prepared),
            logger: logger)
        let console = Console(
            database: pool, tokens: settings.tokens, hosts: settings.hosts, readOnly: settings.readOnly, logger: logger)
        let host = settings.host.contains(":") ? "[\(settings.host)]" : settings.host
        let server = ConsoleServer.make(console: console, host: settings.host, port: settings.port, logger: logger) {
            // Once bound, so that the line means the address answers.
            logger.info(
                "console listening",
                metadata: [
                    "address": "http://\(host):\($0)/console",
                    "database_url": "\(redactedConninfo(database.conninfo))", "read_only": "\(settings.readOnly)",
                    "tokens": "\(settings.tokens.tokens.map(\.name).joined(separator: ","))",
                    "allowed_hosts": "\(settings.hosts.allowed.sorted().joined(separator: ","))",
                ])
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await withTeardown {
            try await group.run()
        } teardown: {
            await pool.close()
        }
    }
}
