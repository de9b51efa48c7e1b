/// An endpoint's concurrency limit, adapted to how it answers: additive increase, multiplicative
/// decrease (AIMD, as TCP's congestion window), with a latency guard.
///
/// Each attempt's result is one signal. A 2xx within the endpoint's usual latency (at most
/// ``Settings/slowFactor`` times its smoothed latency, or under ``Settings/slowFloor`` whatever
/// it is) raises the limit by one, up to the ceiling: while every answer is fast the limit about
/// doubles per round trip, so a healthy endpoint that answers in 200 ms goes from 4 to 64 in a
/// few seconds. A 2xx slower than that holds the limit: the endpoint is queueing, and more
/// requests would only queue longer. A failure that says the endpoint is overloaded or down
/// (``EndpointCircuit/countsAsFailure(_:)``: a timeout, a connection error, 5xx, 408, 429) cuts
/// the limit by ``Settings/backoff``, down to the floor, once per window: requests sent before
/// the last cut and failing after it are the same overload (a stall, a hang, an outage) and cut
/// nothing more, as TCP halves its window once per loss window and Netflix's `WindowedLimit`
/// folds a window's samples into one update. A hanging endpoint drops from 64 to 1 in six rounds
/// of timeouts. Cut per outcome instead, the four timeouts of one stall took a 4-slot endpoint to
/// 1, and the request it then sent alone met the circuit breaker's failures in a row
/// (docs/notes/issue-22-chaos.md). Any other answer (a 4xx about one delivery) says nothing and
/// changes nothing.
///
/// Why AIMD and not a latency gradient (Netflix's concurrency-limits Gradient2, Envoy's adaptive
/// concurrency filter): a gradient needs a trustworthy minimum round-trip time, which Envoy
/// measures by periodically dropping the limit to a floor, and a receiver on the public internet
/// has latency that moves for reasons that are not load (its own database, its cold starts); a
/// gradient read from it moves the limit on noise. Receivers do tell us when they are overloaded,
/// in words (429, 503, timeouts), and AIMD acts on exactly those, with two numbers of state
/// besides the smoothed latency (the limit, when it was last cut), cheap to keep in the database
/// and to update from any replica.
/// The latency guard takes from the gradient family only what is robust: do not push harder on
/// an endpoint that has become slower than usual.
public struct AdaptiveLimit: Sendable, Equatable {
    public struct Settings: Sendable, Equatable {
        public var floor: Int
        public var initial: Int
        public var ceiling: Int
        /// A 2xx slower than this many times the usual latency holds the limit.
        public var slowFactor: Double
        /// Answers faster than this (milliseconds) are never slow.
        public var slowFloor: Double
        /// What a failure multiplies the limit by.
        public var backoff: Double
        /// The weight of each 2xx's latency in the smoothed latency.
        public var smoothing: Double

        public init(
            floor: Int = 1, initial: Int = 4, ceiling: Int = 64, slowFactor: Double = 2, slowFloor: Double = 50,
            backoff: Double = 0.5, smoothing: Double = 0.1
        ) {
            self.floor = max(1, floor)
            self.ceiling = max(self.floor, ceiling)
            self.initial = min(max(initial, self.floor), self.ceiling)
            self.slowFactor = max(1, slowFactor)
            self.slowFloor = max(0, slowFloor)
            self.backoff = min(max(backoff, 0.05), 0.95)
            self.smoothing = min(max(smoothing, 0.01), 1)
        }
    }

    /// What one attempt said about the endpoint.
    public enum Signal: Sendable, Equatable {
        /// A 2xx, after this many milliseconds.
        case answered(milliseconds: Double)
        /// Overloaded or down: a timeout, a connection error, 5xx, 408, 429.
        case overloaded
        /// Nothing about the endpoint's capacity (a 4xx about one delivery, a refused URL).
        case neutral

        /// The signal of an attempt's result.
        public init(_ result: SendResult) {
            if result.succeeded {
                self = .answered(milliseconds: Double(result.duration.totalMilliseconds))
            } else if EndpointCircuit.countsAsFailure(result) {
                self = .overloaded
            } else {
                self = .neutral
            }
        }

        /// The name the database function takes.
        var name: String {
            switch self {
            case .answered: "answered"
            case .overloaded: "overloaded"
            case .neutral: "neutral"
            }
        }
    }

    /// The limit as a real number (increases and cuts are fractional in effect); ``current`` is
    /// what the claim obeys.
    public var value: Double
    /// The smoothed latency of 2xx answers, in milliseconds; nil before the first.
    public var latency: Double?
    /// When the limit was last cut (seconds on the caller's clock); nil when never, or when the
    /// cut's time was not given.
    public var cutAt: Double?

    public init(settings: Settings = Settings()) {
        value = Double(settings.initial)
        latency = nil
    }

    public init(value: Double, latency: Double?, cutAt: Double? = nil) {
        self.value = value
        self.latency = latency
        self.cutAt = cutAt
    }

    /// The whole number of requests allowed in flight.
    public func current(_ settings: Settings) -> Int {
        min(max(Int(value.rounded(.down)), settings.floor), settings.ceiling)
    }

    /// Whether a 2xx after `milliseconds` is within the endpoint's usual latency.
    public func isUsual(_ milliseconds: Double, _ settings: Settings) -> Bool {
        guard let latency else { return true }
        return milliseconds <= max(settings.slowFloor, settings.slowFactor * latency)
    }

    /// Records one attempt's signal whose request was sent after every earlier cut.
    public mutating func record(_ signal: Signal, _ settings: Settings) {
        record(signal, settings, sentAt: nil, at: nil)
    }

    /// Records one attempt's signal: its request was sent at `sentAt` and ended by `now` (seconds
    /// on one clock; nil: after every earlier cut, and a cut whose time is not kept). An overload
    /// signal of a request sent before the last cut changes nothing.
    public mutating func record(_ signal: Signal, _ settings: Settings, sentAt: Double?, at now: Double?) {
        let bounded = { (value: Double) in min(max(value, Double(settings.floor)), Double(settings.ceiling)) }
        switch signal {
        case .answered(let milliseconds):
            if isUsual(milliseconds, settings) { value = bounded(value + 1) } else { value = bounded(value) }
            latency = latency.map { $0 + settings.smoothing * (milliseconds - $0) } ?? milliseconds
        case .overloaded:
            if let cutAt, let sentAt, sentAt < cutAt { break }
            value = bounded(value * settings.backoff)
            cutAt = now
        case .neutral:
            break
        }
    }
}
