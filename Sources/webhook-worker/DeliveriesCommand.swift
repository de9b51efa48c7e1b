import ArgumentParser
import Foundation
import LibPQ

struct DeliveriesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deliveries",
        abstract: "Delivery history (webhook_worker.webhook_deliveries and delivery_attempts).",
        subcommands: [List.self, Show.self, Resend.self, Cancel.self])

    static let columns = """
        delivery_id, event, status, attempts, last_http_status, last_error, oauth_client_id,
        integration_account_id, user_id, source_job_id, created_at, updated_at, delivered_at
        """

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List deliveries, newest first.")
        @Option(help: "Only this OAuth client (its \"OAuthClient\".id).") var client: String?
        @Option(help: "Only this status: pending, delivered, failed or cancelled.") var status: String?
        @Option(help: "Only those created since: a duration ago (1h, 2d) or an ISO 8601 time.") var since: Since?
        @Option(help: "At most this many rows.") var limit: Int = 100
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if let status, !["pending", "delivered", "failed", "cancelled"].contains(status) {
                throw ValidationError("--status must be pending, delivered, failed or cancelled")
            }
            guard limit > 0 else { throw ValidationError("--limit must be positive") }
        }

        func run() async throws {
            let db = try await OperatorDatabase.open(database)
            let rows = try await db.rows(
                "listDeliveries",
                """
                SELECT \(DeliveriesCommand.columns) FROM webhook_worker.webhook_deliveries
                WHERE ($1::text IS NULL OR oauth_client_id = $1) AND ($2::text IS NULL OR status = $2)
                  AND ($3::timestamptz IS NULL OR created_at >= $3)
                ORDER BY created_at DESC, delivery_id LIMIT $4
                """, [client, status, since?.date, limit])
            await db.close()
            Output(json: json).list(
                rows, columns: ["delivery_id", "oauth_client_id", "status", "attempts", "last_http_status", "created_at", "last_error"])
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
            let db = try await OperatorDatabase.open(database)
            guard var delivery = try await db.rows(
                "showDelivery",
                "SELECT \(DeliveriesCommand.columns), payload FROM webhook_worker.webhook_deliveries WHERE delivery_id = $1::uuid", [id]
            ).first else {
                await db.close()
                throw notFound("no delivery with id \(id)")
            }
            let attempts = try await db.rows(
                "deliveryAttempts",
                """
                SELECT attempt, attempted_at, url, http_status, error_class, error, duration_ms, response_excerpt, worker_id, job_id
                FROM webhook_worker.delivery_attempts WHERE delivery_id = $1::uuid ORDER BY attempt, id
                """, [id])
            await db.close()
            let output = Output(json: json)
            if json {
                delivery["attempt_history"] = attempts
                output.printJSON(delivery)
            } else {
                output.object(
                    delivery,
                    keys: ["delivery_id", "event", "status", "attempts", "last_http_status", "last_error", "oauth_client_id",
                        "integration_account_id", "user_id", "source_job_id", "created_at", "delivered_at", "payload"])
                print("")
                output.list(attempts, columns: ["attempt", "attempted_at", "http_status", "error_class", "duration_ms", "error"])
            }
        }
    }

    struct Resend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send a delivery again: same delivery id, same bytes, a fresh chain of attempts.",
            discussion: "The recipient is checked again before sending, as for any attempt.")
        @Argument(help: "The delivery id.") var id: String
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard UUID(uuidString: id) != nil else { throw ValidationError("'\(id)' is not a delivery id (a UUID)") }
        }

        func run() async throws {
            let db = try await OperatorDatabase.open(database)
            defer { Task { await db.close() } }
            let result = try await db.execute(
                "resendDelivery",
                """
                WITH delivery AS (
                    UPDATE webhook_worker.webhook_deliveries SET status = 'pending', updated_at = now()
                    WHERE delivery_id = $1::uuid
                      AND NOT EXISTS (
                          SELECT 1 FROM webhook_worker.jobs
                          WHERE kind = 'webhook.deliver' AND payload ->> 'delivery_id' = $1::uuid::text)
                    RETURNING delivery_id, oauth_client_id
                )
                INSERT INTO webhook_worker.jobs (kind, payload, unique_key, concurrency_key)
                SELECT 'webhook.deliver', jsonb_build_object('delivery_id', delivery_id), 'webhook.deliver:' || delivery_id,
                       'client:' || oauth_client_id
                FROM delivery
                ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
                RETURNING id
                """, [id.lowercased()])
            guard let job: Int64 = try result.first?.decode("id") else {
                let exists = try await db.execute(
                    "deliveryExists", "SELECT 1 AS one FROM webhook_worker.webhook_deliveries WHERE delivery_id = $1::uuid", [id])
                throw notFound(exists.isEmpty ? "no delivery with id \(id)" : "delivery \(id) already has a job queued")
            }
            print("queued delivery \(id.lowercased()) again as job \(job)")
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel pending deliveries, one by id or all of one OAuth client's: nothing more is sent for them.",
            discussion: """
                Each becomes `cancelled` and its waiting job leaves the queue (recorded as a cancelled \
                attempt). An attempt already in flight finishes, but the delivery stays cancelled.
                """)
        @Argument(help: "The delivery id.") var id: String?
        @Option(help: "Every pending delivery of this OAuth client (its \"OAuthClient\".id).") var client: String?
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if (id == nil) == (client == nil) { throw ValidationError("give a delivery id or --client, one of them") }
            if let id, UUID(uuidString: id) == nil { throw ValidationError("'\(id)' is not a delivery id (a UUID)") }
        }

        func run() async throws {
            let db = try await OperatorDatabase.open(database)
            let row = try await db.execute(
                "cancelDeliveries",
                """
                WITH cancelled AS (
                    UPDATE webhook_worker.webhook_deliveries
                    SET status = 'cancelled', last_error = 'cancelled by an operator', updated_at = now()
                    WHERE status = 'pending' AND ($1::uuid IS NULL OR delivery_id = $1::uuid)
                      AND ($2::text IS NULL OR oauth_client_id = $2)
                    RETURNING delivery_id
                ), removed AS (
                    DELETE FROM webhook_worker.jobs j USING cancelled c
                    WHERE j.kind = 'webhook.deliver' AND j.state = 'available'
                      AND j.payload ->> 'delivery_id' = c.delivery_id::text
                    RETURNING j.id, j.kind, j.attempt
                ), recorded AS (
                    INSERT INTO webhook_worker.job_attempts (job_id, kind, attempt, worker_id, started_at, finished_at, outcome, error)
                    -- The attempt that would have run next: the job's earlier numbers are taken.
                    SELECT id, kind, attempt + 1, 'operator', now(), now(), 'cancelled', 'cancelled by an operator' FROM removed
                )
                SELECT (SELECT count(*) FROM cancelled) AS cancelled, (SELECT count(*) FROM removed) AS jobs_removed
                """, [id?.lowercased(), client]
            ).first
            await db.close()
            let cancelled: Int = try row?.decode("cancelled") ?? 0
            guard cancelled > 0 else {
                throw notFound(id.map { "delivery \($0) is not pending (or does not exist)" } ?? "no pending delivery for client \(client ?? "")")
            }
            if json {
                Output(json: true).printJSON(["cancelled": cancelled, "jobs_removed": try row?.decode("jobs_removed", as: Int.self) ?? 0])
            } else {
                print("cancelled \(cancelled) deliver\(cancelled == 1 ? "y" : "ies")")
            }
        }
    }
}
