import ArgumentParser
import Foundation
import LibPQ
import WebhookDelivery

extension EndpointsCommand {
    /// `endpoints set`: change an endpoint's settings, each option one change, all of them and
    /// their audit row in one transaction.
    struct SetEndpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Change an endpoint's settings (--ordering).",
            discussion: """
                --ordering fifo sends the endpoint's deliveries one at a time, in the order they were created: \
                a failing delivery holds the later ones through its retries (and while the circuit is open), \
                and the next goes once it is delivered, dead-lettered or cancelled. --ordering none (the \
                default) sends as many at once as the endpoint's limit allows; turning FIFO off lets the \
                waiting deliveries go at once. Recorded in the audit log (console_audit) with --actor.
                """)
        @Argument(help: "The endpoint: OAuth client id, public clientId, or key.") var endpoint: String
        @Option(help: "fifo: one delivery at a time, in creation order; none: as many as its limit allows.")
        var ordering: String?
        @OptionGroup var actor: ActorOptions
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard ordering != nil else { throw ValidationError("nothing to set: give --ordering") }
            if let ordering, EndpointOrdering(text: ordering) == nil {
                throw ValidationError("--ordering '\(ordering)': expected \(EndpointOrdering.choices)")
            }
        }

        func run() async throws {
            let (key, changes) = try await withOperatorConnection(database) { connection in
                try await connection.transaction { connection in
                    let endpoints = Endpoints(connection)
                    let key = try await endpoints.key(for: endpoint)
                    var detail: [String: String] = ["via": "cli"]
                    var changes: [String] = []
                    if let ordering = ordering.flatMap(EndpointOrdering.init(text:)) {
                        changes.append(try await Self.setOrdering(ordering, key: key, endpoints, &detail))
                    }
                    try await AuditLog(connection).record(
                        actor: "operator (\(actor.name))", action: "endpoint.set", target: "endpoint:\(key)",
                        detail: detail, outcome: "ok")
                    return (key, changes)
                }
            }
            print("endpoint \(key): " + changes.joined(separator: ", "))
        }

        /// `--ordering`: sets it, notes it in the audit row's detail, and says what changed.
        static func setOrdering(
            _ ordering: EndpointOrdering, key: String, _ endpoints: Endpoints, _ detail: inout [String: String]
        ) async throws -> String {
            let previous = try await endpoints.setOrdering(key: key, ordering)
            detail["ordering"] = ordering.rawValue
            detail["previous_ordering"] = previous.rawValue
            return previous == ordering
                ? "ordering stays \(ordering.rawValue)" : "ordering \(previous.rawValue) -> \(ordering.rawValue)"
        }
    }
}
