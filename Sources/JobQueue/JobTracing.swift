import LibPQ
import Logging
import Tracing
import W3CTraceContext

/// The worker's tracing: off, or a tracer that gets one span per job attempt and the child spans
/// handlers start with ``withSpan(_:ofKind:_:)``.
///
/// Off (``off``, the default) creates nothing: no span, no attribute, no extra statement. On, the
/// attempt span continues the trace in the job's `trace_context` column when it holds a valid
/// W3C trace context, and starts a trace of its own otherwise.
public struct JobTracing: Sendable {
    /// nil when tracing is off.
    public let tracer: (any Tracer)?

    public static let off = JobTracing(nil)

    public init(_ tracer: (any Tracer)?) {
        self.tracer = tracer
    }

    public var isOn: Bool { tracer != nil }

    /// Runs `operation` in a span, a child of the task's current one; `operation` gets the span
    /// to set attributes on, or nil when tracing is off (then nothing else happens). A thrown
    /// error is recorded on the span and rethrown.
    public func withSpan<T>(
        _ name: String, ofKind kind: SpanKind = .internal, _ operation: ((any Span)?) async throws -> T
    ) async rethrows -> T {
        guard let tracer else { return try await operation(nil) }
        let span = tracer.startSpan(name, context: InstrumentationContext.current ?? .topLevel, ofKind: kind)
        defer { span.end() }
        do {
            return try await InstrumentationContext.$current.withValue(span.context) { try await operation(span) }
        } catch {
            span.recordError(error)
            span.setStatus(SpanStatus(code: .error))
            throw error
        }
    }

    /// Runs `operation` in a client span for one PostgreSQL statement (OpenTelemetry's database
    /// conventions: `db.system.name`, and the statement's name as `db.query.summary`).
    public func withStatementSpan<T>(_ name: String, _ operation: () async throws -> T) async rethrows -> T {
        guard isOn else { return try await operation() }
        return try await withSpan(name, ofKind: .client) { span in
            span?.updateAttributes { attributes in
                attributes.set("db.system.name", value: .string("postgresql"))
                attributes.set("db.query.summary", value: .string(name))
            }
            return try await operation()
        }
    }

    /// The `traceparent` (and `tracestate`) of the task's current span, as HTTP headers: empty
    /// when tracing is off or no span is current.
    public func propagationHeaders() -> [(String, String)] {
        guard let tracer, let context = InstrumentationContext.current else { return [] }
        var headers: [(String, String)] = []
        tracer.inject(context, into: &headers, using: HeaderListInjector())
        return headers
    }

    /// The `trace_context` to store for the current span: its `traceparent`, and its `tracestate`
    /// after a space. nil when tracing is off or no span is current.
    public func currentTraceContext() -> String? {
        let headers = propagationHeaders()
        guard let parent = headers.first(where: { $0.0 == "traceparent" })?.1 else { return nil }
        guard let state = headers.first(where: { $0.0 == "tracestate" })?.1, !state.isEmpty else { return parent }
        return parent + " " + state
    }

    // MARK: The attempt span

    /// Starts the span of one attempt, continuing the job's stored trace context when it is
    /// valid (a malformed one is ignored, with a debug log). nil when tracing is off.
    func startAttempt(_ job: Job, logger: Logger) -> (any Span)? {
        guard let tracer else { return nil }
        var parent = InstrumentationContext.topLevel
        if let stored = job.traceContext {
            switch StoredTraceContext.parse(stored) {
            case .success(let headers):
                tracer.extract(headers, into: &parent, using: HeaderListExtractor())
            case .failure(let problem):
                logger.debug(
                    "the job's trace_context is not a W3C trace context; starting a new trace",
                    metadata: ["error": "\(problem)"])
            }
        }
        let span = tracer.startSpan(job.kind, context: parent, ofKind: .consumer)
        span.updateAttributes { attributes in
            attributes.set("job.kind", value: .string(job.kind))
            attributes.set("job.id", value: .int64(job.id))
            attributes.set("job.attempt", value: .int64(Int64(job.attempt)))
        }
        return span
    }

    /// Runs `operation` with `span` as the task's current span (as is when `span` is nil).
    func within<T: Sendable>(_ span: (any Span)?, _ operation: () async -> T) async -> T {
        guard let span else { return await operation() }
        return await InstrumentationContext.$current.withValue(span.context) { await operation() }
    }

    // MARK: Reading trace_context

    /// The stored trace contexts of `jobs` (one statement), for the attempts' spans. Only called
    /// while tracing is on: off, the claim stays one statement.
    static func readTraceContexts(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).readTraceContexts",
            "SELECT id, trace_context FROM \(schema).jobs WHERE id = ANY($1::bigint[]) AND trace_context IS NOT NULL")
    }

    /// `jobs` with their `trace_context` filled in where they have one. A failed read costs the
    /// spans their parent, never the jobs.
    func withTraceContexts(
        _ jobs: [Job], schema: JobQueueSchema, connection: PQConnection, logger: Logger
    ) async -> [Job] {
        guard isOn, !jobs.isEmpty else { return jobs }
        do {
            let rows = try await connection.query(
                schema.statements.readTraceContexts, [PQArray(jobs.map(\.id))])
            guard rows.count > 0 else { return jobs }
            var stored: [Int64: String] = [:]
            for row in rows.rows {
                let id: Int64 = try row.decode("id")
                stored[id] = try row.decodeIfPresent("trace_context", as: String.self)
            }
            return jobs.map { job in
                var job = job
                job.traceContext = stored[job.id]
                return job
            }
        } catch {
            logger.debug("could not read the claimed jobs' trace_context", metadata: ["error": "\(error)"])
            return jobs
        }
    }
}

/// The `trace_context` column's text: a W3C `traceparent`, optionally followed by whitespace and
/// a `tracestate` (`00-<trace id>-<parent id>-<flags> vendor=value,...`).
public enum StoredTraceContext {
    /// Longer values are refused without parsing (a `tracestate` holds at most 32 members of at
    /// most 256 characters; 1,024 is far beyond what a web app sends).
    public static let maxLength = 1024

    /// Why a stored value was ignored.
    public struct Malformed: Error, CustomStringConvertible {
        public let description: String
    }

    /// The value as the `traceparent` and `tracestate` headers it stands for, validated.
    public static func parse(_ text: String) -> Result<[(String, String)], Malformed> {
        guard text.utf8.count <= maxLength else {
            return .failure(Malformed(description: "longer than \(maxLength) bytes"))
        }
        let trimmed = text.drop { $0 == " " || $0 == "\t" }
        let parent = String(trimmed.prefix { $0 != " " && $0 != "\t" })
        let state = String(trimmed.dropFirst(parent.count).drop { $0 == " " || $0 == "\t" })
        do {
            let context = try TraceContext(
                traceParentHeaderValue: parent, traceStateHeaderValue: state.isEmpty ? nil : state)
            var headers = [("traceparent", context.traceParentHeaderValue)]
            if let state = context.traceStateHeaderValue { headers.append(("tracestate", state)) }
            return .success(headers)
        } catch {
            let shown = parent.count > 64 ? String(parent.prefix(64)) + "..." : parent
            return .failure(Malformed(description: "not a valid W3C traceparent/tracestate (\(shown)): \(error)"))
        }
    }

    /// True when `text` would continue a trace.
    public static func isValid(_ text: String) -> Bool {
        if case .success = parse(text) { return true }
        return false
    }
}

/// Headers as a list of (name, value) pairs, the form the sender and the tests use.
public struct HeaderListInjector: Injector {
    public init() {}
    public func inject(_ value: String, forKey key: String, into carrier: inout [(String, String)]) {
        carrier.removeAll { $0.0.lowercased() == key.lowercased() }
        carrier.append((key, value))
    }
}

public struct HeaderListExtractor: Extractor {
    public init() {}
    public func extract(key: String, from carrier: [(String, String)]) -> String? {
        carrier.first { $0.0.lowercased() == key.lowercased() }?.1
    }
}
