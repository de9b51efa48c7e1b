import Logging
import Synchronization
import Tracing

/// One span per attempt (JobTracing.swift): it continues the job's stored trace context, is the
/// handler's current span (its statements and requests are children of it), and ends once the
/// outcome is recorded, with `job.outcome`; a child span `record outcome` covers the wait and the
/// write. The worker adds this middleware only while tracing is on.
struct TracingMiddleware: JobMiddleware {
    let tracing: JobTracing
    let spans = AttemptSpans()

    func handle(_ job: Job, logger: Logger, next: () async -> AttemptResult) async -> AttemptResult {
        let attempt = tracing.startAttempt(job, logger: logger)
        let result = await tracing.within(attempt) { await next() }
        if let attempt {
            spans.recording(JobWorker.AttemptKey(id: job.id, attempt: job.attempt), attempt: attempt, tracing: tracing)
        }
        return result
    }

    func recorded(_ entry: Finisher.Entry, result: Finisher.Result) {
        spans.recorded(
            JobWorker.AttemptKey(id: entry.job.id, attempt: entry.job.attempt),
            outcome: result.spanOutcome(entry.resolution), error: result.spanError(entry.resolution))
    }
}

/// The spans of attempts whose outcome is being written: the attempt's span ends, with its
/// `job.outcome`, once the outcome is recorded; a child span covers the wait and the write.
final class AttemptSpans: Sendable {
    private struct Held: Sendable {
        let attempt: any Span
        let recording: any Span
    }
    private let held = Mutex<[JobWorker.AttemptKey: Held]>([:])

    /// Called when the handler has returned and its outcome goes to the finisher.
    func recording(_ key: JobWorker.AttemptKey, attempt: any Span, tracing: JobTracing) {
        guard let tracer = tracing.tracer else { return }
        let recording = tracer.startSpan("record outcome", context: attempt.context, ofKind: .client)
        recording.updateAttributes { attributes in
            attributes.set("db.system.name", value: .string("postgresql"))
            attributes.set("db.query.summary", value: .string("record outcome"))
        }
        held.withLock { $0[key] = Held(attempt: attempt, recording: recording) }
    }

    /// Ends an attempt's spans: `outcome` is what was recorded (`succeeded`, `retried`, ...), or
    /// why nothing was.
    func recorded(_ key: JobWorker.AttemptKey, outcome: String, error: String?) {
        guard let spans = held.withLock({ $0.removeValue(forKey: key) }) else { return }
        spans.recording.end()
        spans.attempt.updateAttributes { $0.set("job.outcome", value: .string(outcome)) }
        if let error { spans.attempt.setStatus(SpanStatus(code: .error, message: error)) }
        spans.attempt.end()
    }

    var isEmpty: Bool { held.withLock { $0.isEmpty } }
}

extension Finisher.Result {
    /// The attempt span's `job.outcome`: what was recorded, or why nothing was.
    func spanOutcome(_ resolution: Resolution) -> String {
        switch self {
        case .applied: resolution.outcomeLabel
        case .notHeld: "lease_lost"
        case .abandoned: "not_recorded"
        }
    }

    /// The error an attempt span's status carries: a failed attempt's, or nil.
    func spanError(_ resolution: Resolution) -> String? {
        switch self {
        case .notHeld: return "the lease was lost before the outcome was recorded"
        case .abandoned: return "the outcome could not be recorded before shutdown"
        case .applied: break
        }
        switch resolution {
        case .retry(let error, _): return error
        case .deadLetter(_, let error): return error
        case .complete, .cancel, .release, .snooze: return nil
        }
    }
}
