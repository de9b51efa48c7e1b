import Logging

/// Code around every attempt's handler, as swift-jobs composes its middleware: the worker's
/// metrics (``MetricsMiddleware``) and its tracing (``TracingMiddleware``) are the two. The first
/// in the list is the outermost.
protocol JobMiddleware: Sendable {
    /// Runs one attempt: calls `next` (the handler, or the next middleware) once and returns what
    /// it returned.
    func handle(_ job: Job, logger: Logger, next: () async -> AttemptResult) async -> AttemptResult
    /// The attempt's outcome was written, found not held, or given up (``Finisher/Result``).
    func recorded(_ entry: Finisher.Entry, result: Finisher.Result)
}

/// What a handler did: returned an outcome, or threw.
enum AttemptResult: Sendable {
    case decided(JobOutcome)
    case threw(any Error)
}

extension Array where Element == any JobMiddleware {
    /// Runs `handler` inside every middleware, the first outermost.
    func handle(_ job: Job, logger: Logger, handler: () async -> AttemptResult) async -> AttemptResult {
        func run(from index: Int) async -> AttemptResult {
            guard index < count else { return await handler() }
            return await self[index].handle(job, logger: logger) { await run(from: index + 1) }
        }
        return await run(from: 0)
    }
}
