import Foundation
import JobQueue
@testable import TestSupport
import Testing
import WebhookDelivery
@testable import webhook_worker

/// `run`'s settings are declared once (RunSettings); the help, the parse, the log line and the
/// docs' table come from the declarations.
@Suite("Settings declared once", .timeLimit(.minutes(1)))
struct SettingDeclarationTests {
    /// The settings `run` reads itself; `--database-url` and the logging flags are read by the
    /// option groups every command shares.
    static let readByRun = RunSettings.all.filter {
        ![RunSettings.databaseURL, RunSettings.logLevel, RunSettings.logFormat].map(\.flag).contains($0.flag)
    }

    /// A value each kind refuses; nil for text that takes anything.
    static func badValue(_ setting: Setting) -> String? {
        switch setting.kind {
        case .duration: "soon"
        case .integer: "lots"
        case .onOff, .toggle: "maybe"
        case .schedule: "5s,soon"
        case .text(let problem): problem("bad\n\u{0}") == nil ? nil : "bad\n\u{0}"
        case .list: nil
        }
    }

    /// What `--console-read-only` needs before it is read at all.
    static let consoleOn = ["WORKER_CONSOLE": "1", "WORKER_HTTP_PORT": "9090", "WORKER_HTTP_HOST": "127.0.0.1"]

    @Test("docs/operations.md's tables of settings (run's, console's) are the ones the declarations make")
    func docsTable() throws {
        let path = TestDatabase.repoRoot + "/docs/operations.md"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for table in SettingsTable.all {
            #expect(
                table.current(in: text) == table.markdown,
                """
                docs/operations.md's \(table.name) table differs from the declarations; regenerate it with \
                `swift run webhook-worker settings --markdown --update docs/operations.md`
                """)
        }
    }

    @Test("flags, variables and log keys are unique; each is a flag of run with its declared help")
    func unique() {
        for name in [\Setting.flag, \Setting.variable, \Setting.key] {
            let names = RunSettings.all.map { $0[keyPath: name] }
            #expect(Set(names).count == names.count, "\(names)")
        }
        let help = RunCommand.helpMessage(columns: 10_000)
        for setting in RunSettings.all {
            if setting.environmentOnly {
                // A secret: never a flag (argv is visible to every local user).
                #expect(!help.contains("--\(setting.flag)"), "\(setting.flag)")
                continue
            }
            #expect(help.contains("--\(setting.flag)"), "\(setting.flag)")
            #expect(help.contains(setting.help()), "\(setting.flag): \(help)")
        }
    }

    @Test("console's settings: each a flag with its declared help, but the token, which is never a flag")
    func consoleSettings() throws {
        let help = ConsoleCommand.helpMessage(columns: 10_000)
        for setting in ConsoleCommandSettings.all {
            #expect(help.contains("--\(setting.flag)") != setting.environmentOnly, "\(setting.flag)")
            if !setting.environmentOnly {
                #expect(help.contains(setting.help()), "\(setting.flag): \(help)")
            }
        }
        let defaults = try ConsoleCommand.parse([]).settings(environment: [:])
        #expect(defaults.host == "127.0.0.1" && defaults.port == 8090 && !defaults.readOnly)
        for (variable, bad) in [("WORKER_CONSOLE_HOST", "a b"), ("WORKER_CONSOLE_PORT", "0")] {
            #expect(throws: SettingError.self, "\(variable)=\(bad)") {
                try ConsoleCommand.parse([]).settings(environment: [variable: bad])
            }
        }
        let given = try ConsoleCommand.parse(["--port", "9000", "--allowed-host", "a.example", "--read-only"])
            .settings(environment: [
                "WORKER_CONSOLE_PORT": "lots", "WORKER_CONSOLE_ALLOWED_HOSTS": "b.example,c.example",
            ])
        #expect(given.port == 9000 && given.readOnly)
        #expect(given.hosts.allowed.isSuperset(of: ["a.example", "b.example", "c.example"]), "\(given.hosts.allowed)")
    }

    @Test("every setting of run is read from its variable: a bad value is refused naming it, and the flag wins")
    func everySettingIsRead() throws {
        for setting in Self.readByRun {
            let extra = setting.flag == RunSettings.consoleReadOnly.flag ? Self.consoleOn : [:]
            guard let bad = Self.badValue(setting) else { continue }
            do {
                _ = try RunCommand.parse([]).settings(environment: extra.merging([setting.variable: bad]) { $1 })
                Issue.record("\(setting.variable)=\(bad) was accepted")
            } catch let error as SettingError {
                #expect(error.description.contains(setting.isToggle ? setting.variable : setting.name), "\(error)")
            }
            if case .value(let text) = setting.default {
                let command = try RunCommand.parse(["--\(setting.flag)", text])
                #expect(throws: Never.self, "\(setting.flag)") {
                    try command.settings(environment: extra.merging([setting.variable: bad]) { $1 })
                }
            }
        }
    }

    @Test("declared defaults are the libraries' where they have one")
    func defaults() throws {
        let settings = try RunCommand.parse([]).settings(environment: [:])
        let catchUp = try #require(settings.catchUp)
        #expect(catchUp.interval == IntegrationCatchUp.Configuration().interval)
        #expect(catchUp.window == IntegrationCatchUp.Configuration().window)
        #expect(settings.delivery.retryStrategy.description == ScheduleRetryStrategy.standard.description)
        #expect(settings.queue.concurrency == 128 && settings.poolSize == 8 && settings.httpPort == nil)
        #expect(settings.queue.lease == .seconds(60) && settings.delivery.disableAfter == .seconds(5 * 86_400))
    }

    @Test("the effective settings line has every setting of run, and no password")
    func loggedLine() throws {
        let command = try RunCommand.parse([
            "--database-url", "postgresql://ops:pa55word@db.example/app",
            "--listen-database-url", "host=db.example password=l1sten dbname=app",
            "--proxy-url", "http://egress:pr0xy@proxy.internal:3128",
            "--operational-url", "https://hooks:0psurl@app.internal/webhook-events",
        ])
        var environment = Self.consoleOn
        environment["WEBHOOK_OPERATIONAL_SECRET"] = "whsec_c2VjcmV0LW9wcw"
        let settings = try command.settings(environment: environment)
        let logged = settings.logged
        #expect(settings.operational?.secret == "whsec_c2VjcmV0LW9wcw")
        #expect(settings.operational?.url == "https://hooks:0psurl@app.internal/webhook-events")
        #expect(logged["operational_secret"] == "set")
        #expect(logged["operational_url"] == "https://***@app.internal/webhook-events")
        for setting in Self.readByRun {
            #expect(logged[setting.key] != nil, "\(setting.key)")
        }
        #expect(logged["database_url"] != nil && logged["version"] != nil && logged["traces"] == "off")
        #expect(logged["concurrency"] == "128" && logged["lease"] == "1m" && logged["console"] == "on")
        #expect(logged["allow_http"] == "false" && logged["http_port"] == "9090")
        let text = "\(logged)"
        #expect(!text.contains("pa55word") && !text.contains("l1sten") && !text.contains("pr0xy"), "\(text)")
        #expect(!text.contains("0psurl") && !text.contains("c2VjcmV0LW9wcw"), "\(text)")
        #expect(logged["proxy_url"] == "http://***@proxy.internal:3128")
        let off = try RunCommand.parse(["--catch-up-interval", "off"]).settings(environment: [:]).logged
        #expect(off["catch_up_interval"] == "off" && off["catch_up_window"] == "off" && off["console"] == "off")
        #expect(off["proxy_url"] == "off")
        #expect(off["operational_url"] == "off" && off["operational_secret"] == "unsigned")
        #expect(throws: SettingError.self) {
            try RunCommand.parse(["--operational-url", "ftp://app.internal/x"]).settings(environment: [:])
        }
        #expect(throws: SettingError.self) {
            try RunCommand.parse(["--proxy-url", "https://proxy:3128"]).settings(environment: [:])
        }
    }
}
