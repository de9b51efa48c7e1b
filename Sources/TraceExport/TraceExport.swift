import Foundation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// Exporting the worker's spans with OTLP over HTTP (swift-otel), configured by the standard
/// `OTEL_*` variables.
///
/// Tracing is on only when an endpoint is named (`OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); otherwise ``make(environment:logger:)`` returns nil and
/// the worker creates no spans at all. swift-otel stops the process on some values it does not
/// support (the gRPC protocol in a build without it, the Jaeger or X-Ray samplers, propagators
/// other than W3C trace context), so those are refused here first, with a message.
public enum TraceExport {
    /// A tracer and the service that batches and sends its spans; run the service (in the
    /// program's ServiceGroup) for as long as the tracer is used: its graceful shutdown sends the
    /// spans still waiting.
    public struct Backend: Sendable {
        public let tracer: any Tracer
        public let service: any Service
    }

    /// A setting the exporter cannot use.
    public struct SettingError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The service name spans carry unless `OTEL_SERVICE_NAME` says otherwise.
    public static let defaultServiceName = "webhook-worker"

    /// The protocols this build sends.
    public static let protocols = ["http/protobuf", "http/json"]
    /// The samplers swift-otel implements (`OTEL_TRACES_SAMPLER`).
    public static let samplers = [
        "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
        "parentbased_traceidratio",
    ]

    /// True when `environment` names an OTLP endpoint for traces and does not turn tracing off
    /// (`OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`).
    public static func isEnabled(_ environment: [String: String]) -> Bool {
        if environment["OTEL_SDK_DISABLED"]?.lowercased() == "true" { return false }
        if environment["OTEL_TRACES_EXPORTER"]?.lowercased() == "none" { return false }
        return ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].contains {
            !(environment[$0] ?? "").isEmpty
        }
    }

    /// Refuses the `OTEL_*` values swift-otel would crash on or cannot honour in this build.
    public static func validate(_ environment: [String: String]) throws {
        for name in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] {
            guard let value = environment[name], !value.isEmpty else { continue }
            let url = URLComponents(string: value)
            guard let scheme = url?.scheme?.lowercased(), scheme == "http" || scheme == "https",
                !(url?.host ?? "").isEmpty
            else {
                // The value may carry credentials: it is not repeated.
                throw SettingError(description: "invalid \(name): expected an http:// or https:// URL with a host")
            }
        }
        for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            if let value = environment[name], !value.isEmpty, !protocols.contains(value) {
                throw SettingError(
                    description: """
                        invalid \(name) \(value): this build exports OTLP over HTTP only \
                        (\(protocols.joined(separator: " or ")))
                        """)
            }
        }
        if let value = environment["OTEL_TRACES_SAMPLER"], !value.isEmpty, !samplers.contains(value) {
            throw SettingError(
                description: "invalid OTEL_TRACES_SAMPLER \(value): expected one of \(samplers.joined(separator: ", "))"
            )
        }
        if let sampler = environment["OTEL_TRACES_SAMPLER"], sampler.hasSuffix("traceidratio"),
            let value = environment["OTEL_TRACES_SAMPLER_ARG"], !value.isEmpty
        {
            guard let ratio = Double(value), (0...1).contains(ratio) else {
                throw SettingError(
                    description:
                        "invalid OTEL_TRACES_SAMPLER_ARG \(value): expected a sampling ratio from 0 to 1, like 0.25")
            }
        }
        if let value = environment["OTEL_TRACES_EXPORTER"], !value.isEmpty, !["otlp", "none"].contains(value) {
            throw SettingError(description: "invalid OTEL_TRACES_EXPORTER \(value): expected otlp or none")
        }
        if let value = environment["OTEL_PROPAGATORS"], !value.isEmpty {
            let names = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if let other = names.first(where: { $0 != "tracecontext" && $0 != "none" }) {
                throw SettingError(
                    description: "invalid OTEL_PROPAGATORS \(value): only tracecontext is supported, not \(other)")
            }
        }
    }

    /// The exporter the environment asks for, or nil when tracing is off. swift-otel reads the
    /// process's `OTEL_*` variables itself; pass the same environment here.
    /// - Parameter configure: changes to swift-otel's configuration before the variables apply
    ///   (tests name their collector and a short batch delay).
    public static func make(
        environment: [String: String], logger: Logger,
        configure: (inout OTel.Configuration) -> Void = { _ in }
    ) throws -> Backend? {
        guard isEnabled(environment) else { return nil }
        try validate(environment)
        var configuration = OTel.Configuration.default
        configuration.serviceName = defaultServiceName
        configuration.traces.enabled = true
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.propagators = [.traceContext]
        // swift-otel's own lines (settings read, export failures) at the program's level, without
        // the values of the variables it read: OTEL_EXPORTER_OTLP_HEADERS may hold an API key.
        configuration.diagnosticLogger = .custom(
            Logger(label: logger.label) { _ in RedactingLogHandler(wrapped: logger.handler) })
        configuration.diagnosticLogLevel =
            switch logger.logLevel {
            case .trace: .trace
            case .debug: .debug
            case .info, .notice: .info
            case .warning: .warning
            case .error, .critical: .error
            }
        configure(&configuration)
        let (tracer, service) = try OTel.makeTracingBackend(configuration: configuration)
        return Backend(tracer: tracer, service: service)
    }
}

/// A log handler that hides the values swift-otel logs when it reads its environment variables
/// (`environment_value`, `previous_value`, `new_value`), and forwards everything else.
struct RedactingLogHandler: LogHandler {
    static let hidden: Set<String> = ["environment_value", "previous_value", "new_value"]
    var wrapped: any LogHandler

    var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { wrapped.metadataProvider }
        set { wrapped.metadataProvider = newValue }
    }

    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = Self.redacted(newValue) ?? [:] }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue != nil && Self.hidden.contains(key) ? "(not shown)" : newValue }
    }

    func log(event: LogEvent) {
        var event = event
        event.metadata = Self.redacted(event.metadata)
        wrapped.log(event: event)
    }

    static func redacted(_ metadata: Logger.Metadata?) -> Logger.Metadata? {
        guard var metadata else { return nil }
        for key in hidden where metadata[key] != nil { metadata[key] = "(not shown)" }
        return metadata
    }
}
