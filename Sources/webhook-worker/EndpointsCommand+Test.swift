import ArgumentParser
import Foundation
import LibPQ
import WebhookDelivery

extension EndpointsCommand {
    /// `endpoints test`: a `webhook.test` event to one endpoint, through the running workers.
    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send a webhook.test event to an endpoint now and print how its first attempt went.",
            discussion: """
                The event is a delivery like any other (signed, the same headers, the network policy, the \
                endpoint's circuit and limit, attempts recorded, retries), sent by the running workers; this \
                command waits for its first attempt. Exit status 0 when it was delivered, 1 when the attempt \
                failed or none came within --timeout (the delivery stays queued). Recorded in the audit log \
                (console_audit) with --actor.
                """)
        @Argument(help: "The endpoint: OAuth client id, public clientId, or key.") var endpoint: String
        @Option(help: "How long to wait for the first attempt, e.g. 30s or 2m.") var timeout = "30s"
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var actor: ActorOptions
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard let wait = DurationText.parse(timeout), wait > .zero else {
                throw ValidationError("--timeout '\(timeout)': expected a duration such as 30s or 2m")
            }
        }

        func run() async throws {
            let wait = DurationText.parse(timeout)!
            let (delivery, attempts) = try await withOperatorConnection(database) { connection in
                let key = try await Endpoints(connection).key(for: endpoint)
                let clientID = String(key.dropFirst("client:".count))
                let sent: TestEvents.Sent
                do {
                    sent = try await connection.transaction { connection in
                        let sent = try await TestEvents(connection).send(clientID: clientID)
                        try await AuditLog(connection).record(
                            actor: "operator (\(actor.name))", action: "endpoint.test", target: "endpoint:\(key)",
                            detail: [
                                "delivery_id": sent.deliveryID.lowercasedText, "job_id": "\(sent.jobID)",
                                "via": "cli",
                            ],
                            outcome: "ok")
                        return sent
                    }
                } catch let refusal as TestEvents.Refusal {
                    throw CommandFailure(message: "not sent: \(refusal.description)", status: 1)
                }
                let id = sent.deliveryID.lowercasedText
                FileHandleOutput.write("queued webhook.test delivery \(id) (job \(sent.jobID)); waiting for it\n")
                let deliveries = Deliveries(connection)
                let deadline = ContinuousClock.now + wait
                while true {
                    if let delivery = try await deliveries.get(sent.deliveryID),
                        delivery.attempts > 0 || delivery.status != "pending"
                    {
                        return (delivery, try await deliveries.attempts(of: sent.deliveryID))
                    }
                    guard ContinuousClock.now < deadline else {
                        throw CommandFailure(
                            message: """
                                no attempt of delivery \(id) within \(timeout): is a worker running? It stays \
                                queued; see `deliveries show \(id)`
                                """,
                            status: 1)
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            let output = Output(json: json)
            if json {
                var fields = delivery.fields
                fields["attempt_history"] = attempts.map { Output.present($0.fields) }
                output.object(fields, keys: [])
            } else {
                output.object(
                    delivery.fields,
                    keys: [
                        "delivery_id", "event", "status", "attempts", "last_http_status", "last_error",
                        "oauth_client_id",
                    ]
                )
                print("")
                output.list(
                    attempts.map(\.fields),
                    columns: ["attempt", "attempted_at", "url", "http_status", "error_class", "duration_ms", "error"])
            }
            guard delivery.status == "delivered" else { throw CommandFailure(message: nil, status: 1) }
        }
    }
}
