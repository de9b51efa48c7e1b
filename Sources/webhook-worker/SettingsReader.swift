import Foundation
import JobQueue
import Logging
import WebhookDelivery

/// Reads declared settings (``Setting``) from the flags' values and the environment, each by its
/// declared kind, default and range, and notes the effective value of each for the `effective
/// settings` log line (``logged``), a conninfo with its password masked.
struct SettingsReader {
    let environment: [String: String]
    /// The `effective settings` line's metadata: one key per setting read or noted.
    private(set) var logged: Logger.Metadata = [:]

    init(environment: [String: String]) {
        self.environment = environment
    }

    /// Notes `text` as the setting's effective value, replacing what reading it noted (for a value
    /// completed after reading: the generated worker id, or `off` for a setting that does not apply).
    mutating func note(_ setting: Setting, _ text: String) {
        switch setting.logged {
        case .plain: logged[setting.key] = "\(text)"
        case .conninfo: logged[setting.key] = "\(redactedConninfo(text))"
        case .url:
            logged[setting.key] = "\(text.isEmpty || text == setting.defaultText ? text : URLRedaction.redacted(text))"
        case .secret: logged[setting.key] = "\(text == setting.defaultText ? text : "set")"
        }
    }

    /// A duration; nil for `off` where the setting accepts it.
    mutating func durationOrOff(_ setting: Setting, _ flagValue: String?) throws -> Duration? {
        guard case .duration(let minimum, let acceptsOff) = setting.kind else { preconditionFailure(setting.flag) }
        let source = setting.source(flagValue, environment: environment)
        let text = source.value ?? Self.defaultValue(setting)
        if acceptsOff, text.lowercased() == "off" {
            note(setting, "off")
            return nil
        }
        let value = try SettingSource(setting.flag, setting.variable, text, env: [:]).duration(
            default: .zero, minimum: minimum)
        note(setting, DurationText.format(value))
        return value
    }

    /// A duration, for a setting that does not accept `off`.
    mutating func duration(_ setting: Setting, _ flagValue: String?) throws -> Duration {
        guard let value = try durationOrOff(setting, flagValue) else {
            preconditionFailure("\(setting.flag) accepts off")
        }
        return value
    }

    /// A whole number within the declared range; nil when unset without a default.
    mutating func optionalInteger(_ setting: Setting, _ flagValue: String?) throws -> Int? {
        guard case .integer(let range) = setting.kind else { preconditionFailure(setting.flag) }
        let source = setting.source(flagValue, environment: environment)
        guard source.value != nil || Self.hasDefault(setting) else {
            note(setting, setting.defaultText)
            return nil
        }
        let value = try SettingSource(
            setting.flag, setting.variable, source.value ?? Self.defaultValue(setting), env: [:]
        )
        .integer(default: 0, range: range)
        note(setting, "\(value)")
        return value
    }

    /// A whole number, for a setting with a default.
    mutating func integer(_ setting: Setting, _ flagValue: String?) throws -> Int {
        guard let value = try optionalInteger(setting, flagValue) else { preconditionFailure(setting.flag) }
        return value
    }

    /// `on` or `off`.
    mutating func onOff(_ setting: Setting, _ flagValue: String?) throws -> Bool {
        guard case .onOff = setting.kind else { preconditionFailure(setting.flag) }
        let source = setting.source(flagValue, environment: environment)
        let value = try SettingSource(
            setting.flag, setting.variable, source.value ?? Self.defaultValue(setting), env: [:]
        )
        .onOff(default: false)
        note(setting, value ? "on" : "off")
        return value
    }

    /// A flag without a value, or its variable.
    mutating func toggle(_ setting: Setting, flagSet: Bool) throws -> Bool {
        guard case .toggle = setting.kind else { preconditionFailure(setting.flag) }
        let value = try setting.source(nil, environment: environment).boolean(flagSet: flagSet)
        note(setting, "\(value)")
        return value
    }

    /// Comma-separated durations.
    mutating func schedule(_ setting: Setting, _ flagValue: String?) throws -> ScheduleRetryStrategy {
        guard case .schedule = setting.kind else { preconditionFailure(setting.flag) }
        let text = setting.source(flagValue, environment: environment).value ?? Self.defaultValue(setting)
        guard let value = DurationText.schedule(text) else {
            throw SettingError(
                description:
                    "invalid \(setting.name) '\(text)': expected comma-separated durations like 5s,5m,30m,2h")
        }
        note(setting, "\(value)")
        return value
    }

    /// Text, checked as declared, for a setting with a default.
    mutating func text(_ setting: Setting, _ flagValue: String?) throws -> String {
        guard let value = try optionalText(setting, flagValue) else { preconditionFailure(setting.flag) }
        return value
    }

    /// Text, checked as declared; nil when unset without a default.
    mutating func optionalText(_ setting: Setting, _ flagValue: String?) throws -> String? {
        guard case .text(let problem) = setting.kind else { preconditionFailure(setting.flag) }
        let source = setting.source(flagValue, environment: environment)
        if let value = source.value, let problem = problem(value) {
            throw SettingError(description: "invalid \(setting.name)\(problem)")
        }
        let value: String?
        if let given = source.value {
            value = given
        } else if case .value(let text) = setting.default {
            value = text
        } else {
            value = nil
        }
        note(setting, value ?? setting.defaultText)
        return value
    }

    private static func hasDefault(_ setting: Setting) -> Bool {
        if case .value = setting.default { return true }
        return false
    }

    private static func defaultValue(_ setting: Setting) -> String {
        guard case .value(let text) = setting.default else { preconditionFailure("\(setting.flag) has no default") }
        return text
    }
}
