import ArgumentParser
import Foundation

/// One setting, declared once (in ``RunSettings``): its flag, environment variable, type, default,
/// accepted values and meaning. The rest is derived from the declaration: the flag's `--help`
/// (``help``, through the `@Option(setting)` and `@Flag(setting)` initializers below), the parse
/// (``SettingsReader``: the flag wins over the variable, which wins over the default, and a bad
/// value is one line naming both), the `effective settings` log line, and the table in
/// docs/operations.md (`webhook-worker settings --markdown`, checked by a test).
struct Setting: Sendable {
    /// What a value looks like, and what is accepted.
    enum Kind: Sendable {
        /// A duration such as `250ms` or `5m`, at least `minimum`; with `off`, the word `off`
        /// too, which means none.
        case duration(minimum: Duration, off: Bool = false)
        /// A whole number within the range.
        case integer(ClosedRange<Int>)
        /// `on` or `off` (also 1/0, true/false, yes/no).
        case onOff
        /// A flag without a value, or its variable set to 1 (or 0, true/false, yes/no, on/off).
        case toggle
        /// Comma-separated durations (the retry schedule).
        case schedule
        /// Free text, or one of a list of words; `problem` says what is wrong with a value (the
        /// rest of the line after `invalid --flag (VARIABLE)`), nil when nothing is.
        case text(problem: @Sendable (String) -> String?)
        /// Several values: the flag repeated, the variable comma-separated; both add.
        case list
    }

    /// What applies when neither the flag nor the variable is set.
    enum Default: Sendable {
        /// A value, written as an operator would write it (`60s`, `128`, `on`) and read like one.
        case value(String)
        /// No value: what happens instead, in words (`off`, `host-pid-random`).
        case absent(String)
    }

    /// How the value appears in the `effective settings` log line.
    enum Logged: Sendable {
        case plain
        /// A conninfo or URI: its password is masked.
        case conninfo
        /// A URL, redacted as webhook URLs are (``URLRedaction``): credentials masked.
        case url
        /// A secret: the log line says only whether it is set.
        case secret
    }

    /// The log line's key: the flag in snake_case.
    var key: String { flag.replacingOccurrences(of: "-", with: "_") }
    let flag: String
    let variable: String
    let kind: Kind
    let `default`: Default
    /// What it does, in sentences: the start of its `--help` and a column of the docs' table.
    let summary: String
    /// More for the docs' table only, in Markdown (a link to the section that says more).
    let docs: String?
    let logged: Logged
    /// Read from the variable only, never a flag (a secret: argv is visible to every local user).
    /// `flag` then only names it in the log line.
    let environmentOnly: Bool

    init(
        flag: String, variable: String, _ kind: Kind, default: Default, summary: String, docs: String? = nil,
        logged: Logged = .plain, environmentOnly: Bool = false
    ) {
        self.environmentOnly = environmentOnly
        self.flag = flag
        self.variable = variable
        self.kind = kind
        self.default = `default`
        self.summary = summary
        self.docs = docs
        self.logged = logged
    }

    var isToggle: Bool {
        if case .toggle = kind { return true }
        return false
    }

    /// `--flag (VARIABLE)`, as messages name a setting; the variable alone for one read only from it.
    var name: String { environmentOnly ? variable : "--\(flag) (\(variable))" }

    /// The variable as the help and docs write it: `WEBHOOK_ALLOW_HTTP=1` for a toggle.
    var variableUse: String { isToggle ? "\(variable)=1" : variable }

    var defaultText: String {
        switch self.default {
        case .value(let text), .absent(let text): text
        }
    }

    /// The flag's `--help`: `summary Env: VARIABLE. Default: default.`
    func help(summary: String? = nil) -> String {
        if case .list = kind {
            return
                "\(summary ?? self.summary) Repeatable. Env: \(variableUse) (comma-separated). Default: \(defaultText)."
        }
        return "\(summary ?? self.summary) Env: \(variableUse). Default: \(defaultText)."
    }

    /// Where the value comes from: the flag's value, else the variable (empty counts as unset).
    func source(_ flagValue: String?, environment: [String: String]) -> SettingSource {
        SettingSource(flag, variable, flagValue, env: environment)
    }
}

extension Option where Value == String? {
    /// `@Option(RunSettings.lease) var lease: String?`: the flag and help of a declared setting; the
    /// value is read later by ``SettingsReader``, which knows the variable and the default. `summary`
    /// replaces the declared one where a command uses the setting for something narrower.
    init(_ setting: Setting, summary: String? = nil) {
        self.init(name: .customLong(setting.flag), help: ArgumentHelp(setting.help(summary: summary)))
    }
}

extension Option where Value == [String] {
    /// `@Option(ConsoleCommandSettings.allowedHost) var allowedHosts: [String]`: a repeatable flag.
    init(_ setting: Setting) {
        self.init(wrappedValue: [], name: .customLong(setting.flag), help: ArgumentHelp(setting.help()))
    }
}

extension Flag where Value == Bool {
    /// `@Flag(RunSettings.allowHTTP) var allowHTTP: Bool`: off unless given.
    init(_ setting: Setting) {
        self.init(wrappedValue: false, name: .customLong(setting.flag), help: ArgumentHelp(setting.help()))
    }
}
