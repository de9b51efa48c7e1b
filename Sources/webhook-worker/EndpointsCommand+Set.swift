import ArgumentParser
import Foundation
import LibPQ
import WebhookDelivery

extension EndpointsCommand {
    /// `endpoints set`: an endpoint's operator settings (its limits, its ordering), each changed only
    /// when given; all of them and their audit rows in one transaction.
    struct SetEndpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Change an endpoint's settings: its limits (--max-in-flight, --rate-limit) and --ordering.",
            discussion: """
                --max-in-flight N holds the endpoint to N deliveries in flight across all replicas, \
                overriding its adaptive limit until cleared with --max-in-flight none. --rate-limit R \
                sends it at most R requests per second across all replicas (a token bucket with a burst \
                of max(1, R); deliveries held by it wait unsent and spend no attempt); none removes it. \
                --ordering fifo sends the endpoint's deliveries one at a time, in the order they were created: \
                a failing delivery holds the later ones through its retries (and while the circuit is open), \
                and the next goes once it is delivered, dead-lettered or cancelled. --ordering none (the \
                default) sends as many at once as the endpoint's limit allows; turning FIFO off lets the \
                waiting deliveries go at once. Options not given keep their value. Recorded in the audit log \
                (console_audit) with --actor.
                """)
        @Argument(help: "The endpoint: OAuth client id, public clientId, or key.") var endpoint: String
        @Option(help: "Deliveries in flight at most, 1 to 10000, or none for the adaptive limit.")
        var maxInFlight: String?
        @Option(help: "Requests per second at most (e.g. 20 or 0.5), or none.") var rateLimit: String?
        @Option(help: "fifo: one delivery at a time, in creation order; none: as many as its limit allows.")
        var ordering: String?
        @OptionGroup var actor: ActorOptions
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard maxInFlight != nil || rateLimit != nil || ordering != nil else {
                throw ValidationError("nothing to set: give --max-in-flight, --rate-limit or --ordering")
            }
            _ = try parsedLimits()
            if let ordering, EndpointOrdering(text: ordering) == nil {
                throw ValidationError("--ordering '\(ordering)': expected \(EndpointOrdering.choices)")
            }
        }

        /// The options as changes, or the reason one is not a limit.
        func parsedLimits() throws -> (EndpointLimits.Change<Int>?, EndpointLimits.Change<Double>?) {
            do throws(EndpointLimits.InvalidLimit) {
                var max: EndpointLimits.Change<Int>?
                var rate: EndpointLimits.Change<Double>?
                if let maxInFlight { max = try EndpointLimits.parseMaxInFlight(maxInFlight) }
                if let rateLimit { rate = try EndpointLimits.parseRateLimit(rateLimit) }
                return (max, rate)
            } catch {
                let option = error.limit == "rate limit" ? "--rate-limit" : "--max-in-flight"
                throw ValidationError("\(option) '\(error.text)': \(error.expected)")
            }
        }

        func run() async throws {
            let (max, rate) = try parsedLimits()
            let actorName = "operator (\(actor.name))"
            let (key, changes) = try await withOperatorConnection(database) { connection in
                guard let key = try await Endpoints(connection).existingKey(for: endpoint) else {
                    throw notFound("no OAuth client '\(endpoint)' (by id, public clientId or key): nothing set")
                }
                return try await connection.transaction { connection in
                    var changes: [String] = []
                    if max != nil || rate != nil {
                        changes.append(try await Self.setLimits(max, rate, key: key, by: actorName, connection))
                    }
                    if let ordering = ordering.flatMap(EndpointOrdering.init(text:)) {
                        var detail = ["via": "cli"]
                        changes.append(try await Self.setOrdering(ordering, key: key, Endpoints(connection), &detail))
                        try await AuditLog(connection).record(
                            actor: actorName, action: "endpoint.set", target: "endpoint:\(key)", detail: detail,
                            outcome: "ok")
                    }
                    return (key, changes)
                }
            }
            print("endpoint \(key): " + changes.joined(separator: ", "))
        }

        /// `--max-in-flight`, `--rate-limit`: sets them with their audit row, and says what they are now.
        static func setLimits(
            _ max: EndpointLimits.Change<Int>?, _ rate: EndpointLimits.Change<Double>?, key: String, by actor: String,
            _ connection: PQConnection
        ) async throws -> String {
            let limits = try await Endpoints(connection).setLimits(
                key: key, maxInFlight: max, rateLimit: rate, by: actor)
            var detail = ["via": "cli"]
            if let max { detail["max_in_flight"] = max.text { String($0) } }
            if let rate { detail["rate_limit"] = rate.text(EndpointLimits.format(rate:)) }
            try await AuditLog(connection).record(
                actor: actor, action: "endpoint.set_limits", target: "endpoint:\(key)", detail: detail, outcome: "ok")
            return """
                max in flight \(limits.maxInFlight.map(String.init) ?? "adaptive"), \
                rate limit \(limits.rateLimit.map { EndpointLimits.format(rate: $0) + "/s" } ?? "none")
                """
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
