import Foundation
import WebhookReceiver

/// A stand-in for an OpenTelemetry collector on 127.0.0.1: accepts `POST /v1/traces` with an
/// OTLP/HTTP JSON body (`ExportTraceServiceRequest`), answers as a collector does, and decodes
/// the spans it received.
public final class OTLPCollector: Sendable {
    public let server: WebhookReceiverServer

    public static func start() async throws -> OTLPCollector {
        let server = try await WebhookReceiverServer.start { request in
            guard request.method == "POST", request.uri == "/v1/traces" else { return .status(404) }
            return .status(200, headers: [("Content-Type", "application/json")], body: "{}")
        }
        return OTLPCollector(server: server)
    }

    private init(server: WebhookReceiverServer) {
        self.server = server
    }

    /// The full traces URL, as OTEL_EXPORTER_OTLP_TRACES_ENDPOINT takes it.
    public var tracesURL: String { "http://127.0.0.1:\(server.port)/v1/traces" }

    /// Requests received on any path.
    public var requestCount: Int { server.received.count }

    /// Every span of every export request received so far, in arrival order.
    public var spans: [CollectedSpan] {
        server.received.filter { $0.uri == "/v1/traces" }.flatMap { CollectedSpan.decode(Data($0.body)) }
    }

    public func stop() async { await server.stop() }
}

/// One span of an OTLP JSON export. Ids are lowercase hex (OTLP JSON writes them as hex; a
/// protobuf JSON encoder may write base64: both are read).
public struct CollectedSpan: Sendable, CustomStringConvertible {
    public let traceID: String
    public let spanID: String
    /// Empty for a root span.
    public let parentSpanID: String
    public let name: String
    /// OTLP's SpanKind number: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    public let kind: Int
    /// Attribute values as text (numbers as their digits).
    public let attributes: [String: String]
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    public let statusCode: Int
    public let serviceName: String?

    public var description: String {
        "\(name) trace=\(traceID) span=\(spanID) parent=\(parentSpanID) \(attributes)"
    }

    static func decode(_ body: Data) -> [CollectedSpan] {
        guard let root = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { return [] }
        var spans: [CollectedSpan] = []
        for resourceSpans in root["resourceSpans"] as? [[String: Any]] ?? [] {
            let resource = attributes((resourceSpans["resource"] as? [String: Any])?["attributes"])
            for scopeSpans in resourceSpans["scopeSpans"] as? [[String: Any]] ?? [] {
                for span in scopeSpans["spans"] as? [[String: Any]] ?? [] {
                    spans.append(
                        CollectedSpan(
                            traceID: hex(span["traceId"]), spanID: hex(span["spanId"]),
                            parentSpanID: hex(span["parentSpanId"]), name: span["name"] as? String ?? "",
                            kind: number(span["kind"]) ?? 0, attributes: attributes(span["attributes"]),
                            statusCode: number((span["status"] as? [String: Any])?["code"]) ?? 0,
                            serviceName: resource["service.name"]))
                }
            }
        }
        return spans
    }

    private static func number(_ value: Any?) -> Int? {
        if let value = value as? Int { return value }
        if let value = value as? String { return Int(value) }
        return nil
    }

    /// An id as hex: kept when it already is (16 or 32 hex digits), else read as base64.
    private static func hex(_ value: Any?) -> String {
        guard let text = value as? String, !text.isEmpty else { return "" }
        let hexDigits = Set("0123456789abcdef")
        if (text.count == 16 || text.count == 32) && text.lowercased().allSatisfy(hexDigits.contains) {
            return text.lowercased()
        }
        guard let bytes = Data(base64Encoded: text) else { return "?" + text }
        return bytes.map { String(format: "%02x", $0) }.joined()
    }

    private static func attributes(_ value: Any?) -> [String: String] {
        var result: [String: String] = [:]
        for attribute in value as? [[String: Any]] ?? [] {
            guard let key = attribute["key"] as? String, let value = attribute["value"] as? [String: Any] else {
                continue
            }
            if let text = value["stringValue"] as? String {
                result[key] = text
            } else if let number = value["intValue"] {
                result[key] = "\(number)"
            } else if let flag = value["boolValue"] as? Bool {
                result[key] = "\(flag)"
            } else if let double = value["doubleValue"] {
                result[key] = "\(double)"
            }
        }
        return result
    }
}
