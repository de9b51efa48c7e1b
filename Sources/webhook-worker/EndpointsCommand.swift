import ArgumentParser
import Foundation
import JobQueue
import LibPQ
import WebhookDelivery
import WebhookWorkerSchema

/// `endpoints`: the receivers' circuit breakers (webhook_worker.endpoints), for operators.
struct EndpointsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "endpoints",
        abstract:
            "Receiving endpoints (one per OAuth client): health, circuit state, limits, ordering, enable and disable.",
        discussion: """
            An endpoint appears here once it has failed, was disabled by hand or was given limits \
            (endpoints set); one that never failed is healthy and has no row. ENDPOINT is the OAuth \
            client's id ("OAuthClient".id), its public clientId, or the key (client:<id>).
            """,
        subcommands: [List.self, Show.self, Events.self, SetEndpoint.self, Enable.self, Disable.self, Test.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List endpoints that failed, were disabled or have limits, worst first.")
        @Option(help: "Only this state: closed, open, half_open or disabled.") var state: String?
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if let state, Endpoints.State(rawValue: state) == nil {
                throw ValidationError("--state must be closed, open, half_open or disabled")
            }
        }

        func run() async throws {
            let endpoints = try await withOperatorConnection(database) { connection in
                try await Endpoints(connection).list(state: state.flatMap(Endpoints.State.init(rawValue:)))
            }
            Output(json: json).list(
                endpoints.map(\.fields),
                columns: [
                    "oauth_client_id", "client_name", "state", "consecutive_failures", "pending_deliveries",
                    "success_rate_24h", "ordering", "max_in_flight", "rate_limit", "limit", "in_flight",
                    "next_probe_at", "last_error",
                ])
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one endpoint's health.")
        @Argument(help: "The endpoint: OAuth client id, public clientId, or key.") var endpoint: String
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            // The endpoint's row carries its ordering; only one without a row needs it read alone.
            let (key, health, ordering) = try await withOperatorConnection(database) {
                connection -> (String, EndpointHealth?, EndpointOrdering?) in
                let endpoints = Endpoints(connection)
                let key = try await endpoints.key(for: endpoint)
                guard let health = try await endpoints.get(key: key) else {
                    return (key, nil, try await endpoints.ordering(key: key))
                }
                return (key, health, nil)
            }
            // A healthy endpoint has no row; one set to FIFO is still shown, with that.
            guard let health else {
                if ordering == .fifo {
                    return Output(json: json).object(
                        ["key": key, "state": "closed", "ordering": EndpointOrdering.fifo.rawValue],
                        keys: ["key", "state", "ordering"])
                }
                throw notFound("endpoint \(key) has never failed and was never disabled: it is healthy (closed)")
            }
            let output = Output(json: json)
            if json {
                output.object(health.fields, keys: [])
            } else {
                output.object(
                    health.fields,
                    keys: [
                        "key", "oauth_client_id", "client_name", "client_public_id", "state", "consecutive_failures",
                        "failing_since", "trips", "next_probe_at", "disabled_at", "disabled_by", "last_error",
                        "last_failure_at", "last_success_at", "failures", "recoveries", "pending_deliveries",
                        "success_rate_24h", "ordering", "max_in_flight", "rate_limit", "limits_set_by", "limit",
                        "in_flight", "waiting", "throttled_seconds", "paused_until",
                    ])
            }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Enable an endpoint: close its circuit, forget its failures, and send its waiting deliveries now.",
            discussion:
                """
                Deliveries that ended as endpoint_disabled stay in the dead letters: requeue them with `dead-letters \
                retry --client ID`.
                """
        )
        @Argument(help: "The endpoint: OAuth client id, public clientId, or key.") var endpoint: String
        @OptionGroup var actor: ActorOptions
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            try await setEnabled(endpoint, true, actor: actor, database: database)
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Disable an endpoint: nothing is sent to it; its waiting and new deliveries end as endpoint_disabled.")
        @Argument(help: "The endpoint: OAuth client id, public clientId, or key.") var endpoint: String
        @OptionGroup var actor: ActorOptions
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            try await setEnabled(endpoint, false, actor: actor, database: database)
        }
    }

    static func setEnabled(
        _ endpoint: String, _ enabled: Bool, actor: ActorOptions, database: DatabaseOptions
    ) async throws {
        let (key, state) = try await withOperatorConnection(database) { connection in
            let endpoints = Endpoints(connection)
            let key = try await endpoints.key(for: endpoint)
            return (key, try await endpoints.setEnabled(key: key, enabled, by: "operator (\(actor.name))"))
        }
        print("endpoint \(key) is now \(state ?? "?")")
    }
}
