import ArgumentParser
import Foundation
import LibPQ
import WebhookDelivery

extension EndpointsCommand {
    /// `endpoints set`: an endpoint's operator settings, each changed only when given.
    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set an endpoint's limits: a fixed limit on deliveries in flight, a rate limit.",
            discussion: """
                --max-in-flight N holds the endpoint to N deliveries in flight across all replicas, \
                overriding its adaptive limit until cleared with --max-in-flight none. --rate-limit R \
                sends it at most R requests per second across all replicas (a token bucket with a burst \
                of max(1, R); deliveries held by it wait unsent and spend no attempt); none removes it. \
                Options not given keep their value. Recorded in the audit log (console_audit) with --actor.
                """)
        @Argument(help: "The endpoint: OAuth client id, public clientId, or key.") var endpoint: String
        @Option(help: "Deliveries in flight at most, 1 to 10000, or none for the adaptive limit.")
        var maxInFlight: String?
        @Option(help: "Requests per second at most (e.g. 20 or 0.5), or none.") var rateLimit: String?
        @OptionGroup var actor: ActorOptions
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard maxInFlight != nil || rateLimit != nil else {
                throw ValidationError("nothing to set: give --max-in-flight or --rate-limit")
            }
            _ = try parsedLimits()
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
            let limits = try await withOperatorConnection(database) { connection in
                guard let key = try await Endpoints(connection).existingKey(for: endpoint) else {
                    throw notFound("no OAuth client '\(endpoint)' (by id, public clientId or key): nothing set")
                }
                return try await connection.transaction { connection in
                    let limits = try await Endpoints(connection).setLimits(
                        key: key, maxInFlight: max, rateLimit: rate, by: "operator (\(actor.name))")
                    var detail = ["via": "cli"]
                    if let max { detail["max_in_flight"] = max.text { String($0) } }
                    if let rate { detail["rate_limit"] = rate.text(EndpointLimits.format(rate:)) }
                    try await AuditLog(connection).record(
                        actor: "operator (\(actor.name))", action: "endpoint.set_limits", target: "endpoint:\(key)",
                        detail: detail, outcome: "ok")
                    return limits
                }
            }
            print(
                """
                endpoint \(limits.key): max in flight \(limits.maxInFlight.map(String.init) ?? "adaptive"), \
                rate limit \(limits.rateLimit.map { EndpointLimits.format(rate: $0) + "/s" } ?? "none")
                """)
        }
    }
}
