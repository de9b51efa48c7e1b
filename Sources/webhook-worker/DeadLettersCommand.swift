import ArgumentParser
import Foundation
import LibPQ

struct DeadLettersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters",
        abstract: "Inspect, requeue and purge jobs that gave up (webhook_worker.dead_letter_jobs).",
        subcommands: [List.self, Show.self, Retry.self, Purge.self])

    static let columns = """
        id, job_id, kind, reason, attempts, max_attempts, last_error, payload, created_at, dead_at,
        requeued_at, requeued_job_id, payload ->> 'delivery_id' AS delivery_id
        """

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters, newest first.")
        @Option(help: "Only this kind (e.g. webhook.deliver).") var kind: String?
        @Option(help: "Only those that died since: a duration ago (1h, 2d) or an ISO 8601 time.") var since: Since?
        @Flag(help: "Include dead letters already requeued.") var includeRequeued = false
        @Option(help: "At most this many rows.") var limit: Int = 100
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            guard limit > 0 else { throw ValidationError("--limit must be positive") }
        }

        func run() async throws {
            let db = try await OperatorDatabase.open(database)
            let rows = try await db.rows(
                "listDeadLetters",
                """
                SELECT \(DeadLettersCommand.columns) FROM webhook_worker.dead_letter_jobs
                WHERE ($1::text IS NULL OR kind = $1) AND ($2::timestamptz IS NULL OR dead_at >= $2)
                  AND ($3 OR requeued_at IS NULL)
                ORDER BY dead_at DESC, id DESC LIMIT $4
                """, [kind, since?.date, includeRequeued, limit])
            await db.close()
            Output(json: json).list(rows, columns: ["id", "job_id", "kind", "reason", "attempts", "dead_at", "last_error"])
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead letter with its job's attempts.")
        @Argument(help: "The dead letter's id (not the job id).") var id: Int64
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let db = try await OperatorDatabase.open(database)
            guard var letter = try await db.rows(
                "showDeadLetter", "SELECT \(DeadLettersCommand.columns) FROM webhook_worker.dead_letter_jobs WHERE id = $1", [id]
            ).first else {
                await db.close()
                throw notFound("no dead letter with id \(id)")
            }
            let attempts = try await db.rows(
                "deadLetterAttempts",
                "SELECT attempt, outcome, worker_id, started_at, finished_at, error FROM webhook_worker.job_attempts WHERE job_id = $1 ORDER BY attempt, finished_at",
                [(letter["job_id"] as? NSNumber)?.int64Value ?? 0])
            await db.close()
            let output = Output(json: json)
            if json {
                letter["attempts_history"] = attempts
                output.printJSON(letter)
            } else {
                output.object(
                    letter,
                    keys: ["id", "job_id", "kind", "reason", "attempts", "max_attempts", "last_error", "delivery_id", "created_at",
                        "dead_at", "requeued_at", "requeued_job_id"])
                print("payload       " + Output.text((try? JSONSerialization.data(withJSONObject: letter["payload"] ?? [:], options: [.sortedKeys, .fragmentsAllowed])).map { String(decoding: $0, as: UTF8.self) }))
                print("")
                output.list(attempts, columns: ["attempt", "outcome", "worker_id", "finished_at", "error"])
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put dead letters back in the queue with fresh attempts.",
            discussion:
                "Give one dead letter's id, --all (optionally narrowed by --kind and --since), or --client for one receiver's failed deliveries. Runs in batches.")
        @Argument(help: "The dead letter's id.") var id: Int64?
        @Flag(help: "Requeue every dead letter not yet requeued (narrow with --kind, --since).") var all = false
        @Option(help: "With --all: only this kind.") var kind: String?
        @Option(help: "With --all: only those that died since (1h, 2d, or an ISO 8601 time).") var since: Since?
        @Option(help: "Only the webhook.deliver dead letters of this OAuth client (its \"OAuthClient\".id); implies --all.")
        var client: String?
        @Option(help: "Dead letters per transaction.") var batchSize: Int = 500
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if id != nil && (all || client != nil) { throw ValidationError("give a dead letter id, or --all / --client, not both") }
            if id == nil && !all && client == nil { throw ValidationError("give a dead letter id, --all, or --client") }
            if id != nil && (kind != nil || since != nil) { throw ValidationError("--kind and --since go with --all or --client") }
            guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        }

        /// A dead letter of the OAuth client named by `parameter` (or any, when it is NULL): a
        /// webhook.deliver job whose delivery belongs to that client.
        static func ofClient(_ parameter: String) -> String {
            """
            (\(parameter)::text IS NULL OR (dead_letter_jobs.kind = 'webhook.deliver' AND EXISTS (
                SELECT 1 FROM webhook_worker.webhook_deliveries d
                WHERE d.delivery_id = CASE WHEN dead_letter_jobs.payload ->> 'delivery_id'
                                                ~* '^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$'
                                           THEN (dead_letter_jobs.payload ->> 'delivery_id')::uuid END
                  AND d.oauth_client_id = \(parameter))))
            """
        }

        func run() async throws {
            let db = try await OperatorDatabase.open(database)
            defer { Task { await db.close() } }
            if let id {
                do {
                    let newID: Int64 = try await db.execute(
                        "requeueDeadLetter", "SELECT webhook_worker.requeue_dead_letter($1) AS id", [id]
                    ).first?.decode("id") ?? 0
                    if json { Output(json: true).printJSON(["dead_letter_id": id, "job_id": newID]) } else {
                        print("requeued dead letter \(id) as job \(newID)")
                    }
                } catch let error as PostgresError where error.sqlState == "P0002" {
                    throw notFound("no dead letter with id \(id)")
                } catch let error as PostgresError where error.sqlState == "23505" {
                    throw notFound(error.message)
                }
                return
            }
            let total: Int = try await db.execute(
                "countRequeueable",
                "SELECT count(*) AS n FROM webhook_worker.dead_letter_jobs WHERE requeued_at IS NULL AND ($1::text IS NULL OR kind = $1) AND ($2::timestamptz IS NULL OR dead_at >= $2) AND \(Self.ofClient("$3"))",
                [kind, since?.date, client]
            ).first?.decode("n") ?? 0
            guard total > 0 else { throw notFound("no dead letters to requeue") }
            var done = 0
            var skipped = 0
            var lastID: Int64 = 0
            while true {
                // One batch per statement, in id order; a dead letter whose unique key is already
                // queued again is skipped instead of failing the batch.
                let result = try await db.execute(
                    "requeueBatch",
                    """
                    WITH batch AS (
                        SELECT id, unique_key FROM webhook_worker.dead_letter_jobs
                        WHERE requeued_at IS NULL AND id > $1 AND ($2::text IS NULL OR kind = $2)
                          AND ($3::timestamptz IS NULL OR dead_at >= $3) AND \(Self.ofClient("$5"))
                        ORDER BY id LIMIT $4
                    )
                    SELECT id,
                           CASE WHEN unique_key IS NOT NULL
                                     AND EXISTS (SELECT 1 FROM webhook_worker.jobs j WHERE j.unique_key = batch.unique_key)
                                THEN NULL ELSE webhook_worker.requeue_dead_letter(id) END AS job_id
                    FROM batch ORDER BY id
                    """, [lastID, kind, since?.date, batchSize, client])
                if result.isEmpty { break }
                for row in result.rows {
                    lastID = try row.decode("id")
                    if try row.decodeIfPresent("job_id", as: Int64.self) == nil { skipped += 1 } else { done += 1 }
                }
                if !json { progress("requeued \(done) of \(total)") }
            }
            if json {
                Output(json: true).printJSON(["requeued": done, "skipped_already_queued": skipped])
            } else {
                print("\rrequeued \(done) dead letter(s)" + (skipped > 0 ? ", skipped \(skipped) whose job is already queued" : ""))
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters older than an age, in batches.")
        @Option(help: "Delete those that died longer ago than this (e.g. 30d).") var olderThan: Age
        @Option(help: "Only this kind.") var kind: String?
        @Option(help: "Rows per batch.") var batchSize: Int = 5000
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let db = try await OperatorDatabase.open(database)
            let deleted = try await deleteInBatches(
                db, name: "purgeDeadLetters",
                """
                DELETE FROM webhook_worker.dead_letter_jobs WHERE id IN (
                    SELECT id FROM webhook_worker.dead_letter_jobs
                    WHERE dead_at < $1 AND ($2::text IS NULL OR kind = $2) LIMIT $3)
                """, [olderThan.cutoff, kind], batchSize: batchSize, label: "dead letters")
            await db.close()
            print("\rdeleted \(deleted) dead letter(s)")
        }
    }
}

/// Repeats a `DELETE ... LIMIT`-style statement (its last parameter is the batch size) until it
/// deletes nothing, each batch its own transaction, so no delete holds locks for long.
func deleteInBatches(
    _ db: OperatorDatabase, name: String, _ sql: String, _ bindings: [any PostgresEncodable], batchSize: Int, label: String
) async throws -> Int {
    var total = 0
    while true {
        let deleted = try await db.execute(name, sql, bindings + [batchSize]).affectedRows
        total += deleted
        if deleted == 0 { return total }
        progress("deleted \(total) \(label)")
    }
}
