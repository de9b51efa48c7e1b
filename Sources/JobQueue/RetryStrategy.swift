/// When a failed job runs again, and how many attempts it gets.
///
/// Pick one with a static factory, as the worker's default or a handler's own:
///
/// ```swift
/// configuration.retryStrategy = .schedule([.seconds(5), .seconds(300), .seconds(1800)])
/// configuration.retryStrategy = .exponentialJitter(maxAttempts: 6, initialDelay: .seconds(1), maxDelay: .seconds(60))
/// configuration.retryStrategy = .none
/// ```
///
/// Where the type is optional (``JobHandler/retryStrategy``), `.none` means `nil` (use the
/// worker's strategy): write `NoRetryStrategy()` there.
public protocol RetryStrategy: Sendable, CustomStringConvertible {
    /// Attempts a job gets in all, the first included. A job's own `max_attempts` overrides it.
    var maxAttempts: Int { get }
    /// The wait after failed attempt `attempt` (1-based).
    func delay(afterAttempt attempt: Int) -> Duration
    /// The longest wait this strategy makes: the cap on a wait a handler asks for (`Retry-After`).
    var longestDelay: Duration { get }
}

extension RetryStrategy {
    /// A wait the handler asked for, kept within `0...longestDelay`.
    public func clamp(_ requested: Duration) -> Duration {
        min(max(requested, .zero), longestDelay)
    }
}

extension Duration {
    /// Spread by up to ±`jitter` (0.2 for ±20 %), to milliseconds, so that jobs that failed
    /// together do not all return together.
    func jittered(by jitter: Double) -> Duration {
        let factor = 1 + Double.random(in: -jitter...jitter)
        return .milliseconds(Int64((totalSeconds * factor * 1000).rounded()))
    }
}

/// Waits from a fixed list: the first after the first failed attempt, and so on; a job gets one
/// attempt more than the list has steps.
public struct ScheduleRetryStrategy: RetryStrategy, Equatable {
    public let schedule: [Duration]
    /// The relative spread applied to each wait, 0.2 for ±20 %.
    public let jitter: Double

    public init(schedule: [Duration], jitter: Double = 0.2) {
        precondition(!schedule.isEmpty, "a retry schedule needs at least one step")
        self.schedule = schedule
        self.jitter = min(max(jitter, 0), 1)
    }

    public var maxAttempts: Int { schedule.count + 1 }
    public var longestDelay: Duration { schedule.max()! }

    public func delay(afterAttempt attempt: Int) -> Duration {
        schedule[min(max(attempt, 1), schedule.count) - 1].jittered(by: jitter)
    }

    /// `5s,5m,30m`.
    public var description: String { schedule.map(\.compactDescription).joined(separator: ",") }
}

/// Waits that double from `initialDelay` up to `maxDelay`, each spread by ±`jitter`.
public struct ExponentialJitterRetryStrategy: RetryStrategy, Equatable {
    public let maxAttempts: Int
    public let initialDelay: Duration
    public let maxDelay: Duration
    public let jitter: Double

    public init(maxAttempts: Int, initialDelay: Duration, maxDelay: Duration, jitter: Double = 0.2) {
        precondition(maxAttempts >= 1 && initialDelay > .zero && maxDelay >= initialDelay)
        self.maxAttempts = maxAttempts
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.jitter = min(max(jitter, 0), 1)
    }

    public var longestDelay: Duration { maxDelay }

    public func delay(afterAttempt attempt: Int) -> Duration {
        // 2^62 already exceeds any Duration worth waiting; the cap keeps the shift in range.
        let doublings = min(max(attempt, 1) - 1, 62)
        let base = initialDelay.totalSeconds * Double(1 << doublings)
        return min(.milliseconds(Int64(min(base, maxDelay.totalSeconds) * 1000)), maxDelay).jittered(by: jitter)
    }

    public var description: String {
        "exponential \(initialDelay.compactDescription)..\(maxDelay.compactDescription) x\(maxAttempts)"
    }
}

/// One attempt: a failure goes to the dead letters at once.
public struct NoRetryStrategy: RetryStrategy, Equatable {
    public init() {}
    public var maxAttempts: Int { 1 }
    public var longestDelay: Duration { .zero }
    public func delay(afterAttempt attempt: Int) -> Duration { .zero }
    public var description: String { "none" }
}

extension RetryStrategy where Self == ScheduleRetryStrategy {
    /// Waits from a fixed list (see ``ScheduleRetryStrategy``).
    public static func schedule(_ steps: [Duration], jitter: Double = 0.2) -> ScheduleRetryStrategy {
        ScheduleRetryStrategy(schedule: steps, jitter: jitter)
    }

    /// `5s,5m,30m,2h,5h,10h,10h` with ±20 %: 8 attempts over about a day.
    public static var standard: ScheduleRetryStrategy {
        .schedule([
            .seconds(5), .seconds(300), .seconds(1800), .seconds(7200), .seconds(18_000), .seconds(36_000),
            .seconds(36_000),
        ])
    }
}

extension RetryStrategy where Self == ExponentialJitterRetryStrategy {
    /// Waits doubling from `initialDelay` up to `maxDelay` (see ``ExponentialJitterRetryStrategy``).
    public static func exponentialJitter(
        maxAttempts: Int, initialDelay: Duration, maxDelay: Duration, jitter: Double = 0.2
    ) -> ExponentialJitterRetryStrategy {
        ExponentialJitterRetryStrategy(
            maxAttempts: maxAttempts, initialDelay: initialDelay, maxDelay: maxDelay, jitter: jitter)
    }
}

extension RetryStrategy where Self == NoRetryStrategy {
    /// No retries (see ``NoRetryStrategy``).
    public static var none: NoRetryStrategy { NoRetryStrategy() }
}
