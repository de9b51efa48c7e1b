import JobQueue

/// Durations as operators write them in flags and environment variables: `250ms`, `5s`, `5m`,
/// `2h`, `1d` (a number and a unit). Printed back with `Duration.compactDescription`.
enum DurationText {
    /// Parses one duration; nil when the text is not a positive-or-zero number with a unit.
    static func parse(_ text: String) -> Duration? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        for (unit, seconds) in units where trimmed.hasSuffix(unit) {
            let number = trimmed.dropLast(unit.count)
            // "5ms" also ends with "s"; the unit list tries "ms" first.
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                let value = Double(number), value.isFinite, value >= 0, value * seconds < 1e9
            else { return nil }
            return .milliseconds(Int64((value * seconds * 1000).rounded()))
        }
        return nil
    }

    /// Formats a duration in the largest unit that keeps it whole: `90s`, `5m`, `250ms`.
    static func format(_ duration: Duration) -> String { duration.compactDescription }

    /// A retry schedule's comma-separated form (`5s,5m,30m`); nil when any step is not a duration.
    static func schedule(_ text: String, jitter: Double = 0.2) -> ScheduleRetryStrategy? {
        let steps = text.split(separator: ",", omittingEmptySubsequences: false).map { parse(String($0)) }
        guard !steps.isEmpty, steps.allSatisfy({ $0 != nil }) else { return nil }
        return .schedule(steps.map { $0! }, jitter: jitter)
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: Set<Character>) -> String {
        String(drop { set.contains($0) }.reversed().drop { set.contains($0) }.reversed())
    }
}

extension Set where Element == Character {
    fileprivate static let whitespaces: Set<Character> = [" ", "\t"]
}
