/// When a failed job runs again, and how many attempts it gets.
///
/// The schedule lists the waits after the first, second, ... failed attempt; a job gets one
/// attempt more than the schedule has steps. Each wait is spread by ±`jitter` so that jobs that
/// failed together do not all return together.
public struct RetryPolicy: Sendable, Equatable, CustomStringConvertible {
    public let schedule: [Duration]
    /// The relative spread applied to each wait, 0.2 for ±20 %.
    public let jitter: Double

    public init(schedule: [Duration], jitter: Double = 0.2) {
        precondition(!schedule.isEmpty, "a retry schedule needs at least one step")
        self.schedule = schedule
        self.jitter = min(max(jitter, 0), 1)
    }

    /// `5s,5m,30m,2h,5h,10h,10h`: 8 attempts over about a day.
    public static let standard = RetryPolicy(
        schedule: [.seconds(5), .seconds(300), .seconds(1800), .seconds(7200), .seconds(18_000), .seconds(36_000),
            .seconds(36_000)])

    /// Parses the comma-separated form (`5s,5m,30m`); nil when any step is not a duration.
    public init?(parsing text: String, jitter: Double = 0.2) {
        let steps = text.split(separator: ",", omittingEmptySubsequences: false).map { DurationText.parse(String($0)) }
        guard !steps.isEmpty, steps.allSatisfy({ $0 != nil }) else { return nil }
        self.init(schedule: steps.map { $0! }, jitter: jitter)
    }

    public var maxAttempts: Int { schedule.count + 1 }
    /// The longest step: the cap on a wait a receiver asks for (`Retry-After`).
    public var largestStep: Duration { schedule.max()! }

    /// The wait after failed attempt `attempt` (1-based), jitter applied.
    public func delay(afterAttempt attempt: Int) -> Duration {
        let base = schedule[min(max(attempt, 1), schedule.count) - 1]
        let factor = 1 + Double.random(in: -jitter...jitter)
        return .milliseconds(Int64((DurationText.seconds(base) * factor * 1000).rounded()))
    }

    /// A wait the handler asked for, kept within `0...largestStep`.
    public func clamp(_ requested: Duration) -> Duration {
        min(max(requested, .zero), largestStep)
    }

    public var description: String { schedule.map(DurationText.format).joined(separator: ",") }
}
