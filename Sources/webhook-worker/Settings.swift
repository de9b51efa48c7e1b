import ArgumentParser
import Foundation
import JobQueue

/// A setting that could not be read: names the flag and variable and says what is accepted.
struct SettingError: Error, CustomStringConvertible {
    let description: String
}

/// Where a setting's value comes from: the flag wins over the environment, which wins over the
/// default.
struct SettingSource {
    let flag: String
    let environment: String
    let value: String?

    init(_ flag: String, _ environment: String, _ flagValue: String?, env: [String: String]) {
        self.flag = flag
        self.environment = environment
        self.value = flagValue ?? env[environment].flatMap { $0.isEmpty ? nil : $0 }
    }

    var name: String { "--\(flag) (\(environment))" }

    func duration(default fallback: Duration, minimum: Duration = .milliseconds(1)) throws -> Duration {
        guard let value else { return fallback }
        guard let parsed = DurationText.parse(value), parsed >= minimum else {
            throw SettingError(
                description:
                    """
                    invalid \(name) '\(value)': expected a duration of at least \(DurationText.format(minimum)), like \
                    250ms, 5s, 5m, 2h or 1d
                    """
            )
        }
        return parsed
    }

    func integer(default fallback: Int, range: ClosedRange<Int>) throws -> Int {
        guard let value else { return fallback }
        guard let parsed = Int(value), range.contains(parsed) else {
            throw SettingError(
                description:
                    """
                    invalid \(name) '\(value)': expected a whole number from \(range.lowerBound) to \
                    \(range.upperBound)
                    """
            )
        }
        return parsed
    }

    /// `on` or `off` (also 1/0, true/false, yes/no).
    func onOff(default fallback: Bool) throws -> Bool {
        guard let value else { return fallback }
        switch value.lowercased() {
        case "on", "1", "true", "yes": return true
        case "off", "0", "false", "no": return false
        default: throw SettingError(description: "invalid \(name) '\(value)': expected on or off")
        }
    }

    func boolean(flagSet: Bool) throws -> Bool {
        if flagSet { return true }
        guard let value else { return false }
        switch value.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw SettingError(description: "invalid \(environment) '\(value)': expected 1 or 0 (true/false)")
        }
    }
}

/// Hides the password of a conninfo, URI or key=value, for logs and messages.
func redactedConninfo(_ conninfo: String?) -> String {
    guard let conninfo, !conninfo.isEmpty else { return "(libpq defaults)" }
    if conninfo.hasPrefix("postgres://") || conninfo.hasPrefix("postgresql://") {
        guard var components = URLComponents(string: conninfo) else { return "(unparseable URI)" }
        if components.password != nil { components.password = "***" }
        if let items = components.queryItems {
            components.queryItems = items.map {
                $0.name == "password" ? URLQueryItem(name: "password", value: "***") : $0
            }
        }
        return components.string ?? "(unparseable URI)"
    }
    return conninfo.replacing(/password\s*=\s*('([^'\\]|\\.)*'|\S+)/, with: "password=***")
}
