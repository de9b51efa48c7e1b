import ArgumentParser
import Foundation
import LibPQ
import WebhookDelivery

struct DeliveriesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deliveries",
        abstract: "Delivery history (webhook_worker.webhook_deliveries and delivery_attempts).",
        subcommands: [List.self, Show.self, Resend.self, Cancel.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List deliveries, newest first.")
        @Option(help: "Only this OAuth client: its id, public clientId, or key (client:<id>).") var client: String?
        @Option(help: "Only this status: pending, delivered, failed or cancelled.") var status: String?
        @Option(help: "Only those created since: a duration ago (1h, 2d) or an ISO 8601 time.") var since: Since?
        @Option(help: "At most this many rows.") var limit: Int = 100
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if let status, Delivery.Status(rawValue: status) == nil {
                throw ValidationError("--status must be pending, delivered, failed or cancelled")
            }
            guard limit > 0 else { throw ValidationError("--limit must be positive") }
        }

        func run() async throws {
            let deliveries = try await withOperatorConnection(database) { connection in
                let filter = Deliveries.Filter(
                    client: try await OAuthClientName(connection).id(for: client),
                    status: status.flatMap(Delivery.Status.init(rawValue:)), createdSince: since?.date)
                return try await Deliveries(connection).list(filter, limit: limit)
            }
            Output(json: json).list(
                deliveries.map(\.fields),
                columns: [
                    "delivery_id", "oauth_client_id", "status", "attempts", "last_http_status", "created_at",
                    "last_error",
                ])
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one delivery with every attempt.")
        @Argument(help: "The delivery id (the X-Webhook-Delivery header).") var id: String
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard UUID(uuidString: id) != nil else { throw ValidationError("'\(id)' is not a delivery id (a UUID)") }
        }

        func run() async throws {
            let deliveryID = UUID(uuidString: id)!
            let (delivery, attempts) = try await withOperatorConnection(database) { connection in
                let deliveries = Deliveries(connection)
                guard let delivery = try await deliveries.get(deliveryID) else {
                    throw notFound("no delivery with id \(id)")
                }
                return (delivery, try await deliveries.attempts(of: deliveryID))
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
                        "integration_account_id", "user_id", "source_job_id", "created_at", "delivered_at", "payload",
                    ])
                print("")
                output.list(
                    attempts.map(\.fields),
                    columns: [
                        "attempt", "attempted_at", "http_status", "error_class", "duration_ms", "error",
                        "response_excerpt",
                    ])
            }
        }
    }

    struct Resend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Send deliveries again, one by id or a client's by time range: same delivery ids, fresh attempts.",
            discussion: """
                The recipient is checked again before sending, as for any attempt. With --client and --since, \
                every matching delivery created in [--since, --until) is resent, --batch-size per transaction; \
                one whose job is already queued or in flight is skipped and counted. --dry-run prints the count \
                and changes nothing. A range resend is recorded in the audit log (console_audit) with --actor.
                """)
        @Argument(help: "The delivery id.") var id: String?
        @Option(
            help: "Every delivery of this OAuth client in the range: its id, public clientId, or key (client:<id>).")
        var client: String?
        @Option(help: "With --client: created since a duration ago (2h, 30m, 3d) or an ISO 8601 time.") var since:
            Since?
        @Option(help: "With --client: created before this (a duration ago or an ISO 8601 time). Default: now.")
        var until: Since?
        @Option(help: "With --client: only this status: pending, delivered, failed or cancelled.") var status: String?
        @Flag(help: "With --client: print how many match and what would be done; change nothing.") var dryRun = false
        @Option(
            name: [.customLong("batch-size"), .customLong("batch")], help: "With --client: deliveries per transaction.")
        var batchSize: Int = 500
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var actor: ActorOptions
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if (id == nil) == (client == nil) { throw ValidationError("give a delivery id or --client, one of them") }
            if let id {
                guard UUID(uuidString: id) != nil else {
                    throw ValidationError("'\(id)' is not a delivery id (a UUID)")
                }
                if since != nil || until != nil || status != nil || dryRun {
                    throw ValidationError("--since, --until, --status and --dry-run go with --client")
                }
                return
            }
            guard let since else { throw ValidationError("--client needs --since (e.g. 2h, or an ISO 8601 time)") }
            if let until, until.date <= since.date { throw ValidationError("--until must be later than --since") }
            if let status, Delivery.Status(rawValue: status) == nil {
                throw ValidationError("--status must be pending, delivered, failed or cancelled")
            }
            guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        }

        func run() async throws {
            guard let id else { return try await resendRange() }
            let job = try await withOperatorConnection(database) { connection in
                do {
                    return try await Deliveries(connection).resend(UUID(uuidString: id)!)
                } catch Deliveries.ResendError.notFound {
                    throw notFound("no delivery with id \(id)")
                } catch Deliveries.ResendError.alreadyQueued {
                    throw notFound("delivery \(id) already has a job queued")
                }
            }
            if json {
                Output(json: true).printJSON(["delivery_id": id.lowercased(), "job_id": job])
            } else {
                print("queued delivery \(id.lowercased()) again as job \(job)")
            }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Cancel pending deliveries, one by id or all of one OAuth client's: nothing more is sent for them.",
            discussion: """
                Each becomes `cancelled` and its waiting job leaves the queue (recorded as a cancelled \
                attempt). An attempt already in flight finishes, but the delivery stays cancelled.
                """)
        @Argument(help: "The delivery id.") var id: String?
        @Option(help: "Every pending delivery of this OAuth client: its id, public clientId, or key (client:<id>).")
        var client: String?
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if (id == nil) == (client == nil) { throw ValidationError("give a delivery id or --client, one of them") }
            if let id, UUID(uuidString: id) == nil { throw ValidationError("'\(id)' is not a delivery id (a UUID)") }
        }

        func run() async throws {
            let cancelled = try await withOperatorConnection(database) { connection in
                try await Deliveries(connection).cancel(
                    id: id.flatMap(UUID.init(uuidString:)),
                    client: try await OAuthClientName(connection).id(for: client))
            }
            guard cancelled.deliveries > 0 else {
                throw notFound(
                    id.map { "delivery \($0) is not pending (or does not exist)" }
                        ?? "no pending delivery for client \(client ?? "")")
            }
            if json {
                Output(json: true).printJSON(["cancelled": cancelled.deliveries, "jobs_removed": cancelled.jobsRemoved])
            } else {
                print("cancelled \(cancelled.deliveries) deliver\(cancelled.deliveries == 1 ? "y" : "ies")")
            }
        }
    }
}
