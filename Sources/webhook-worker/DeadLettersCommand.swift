import ArgumentParser
import Foundation
import JobQueue
import LibPQ
import WebhookDelivery
import WebhookWorkerSchema

struct DeadLettersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dead-letters",
        abstract: "Inspect, requeue and purge jobs that gave up (the queue's dead letters).",
        subcommands: [List.self, Show.self, Retry.self, Purge.self])

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
            let letters = try await withOperatorConnection(database) { connection in
                try await DeadLetters(connection, schema: WebhookWorkerSchema.queue).list(
                    DeadLetters.Filter(kind: kind, diedSince: since?.date), includeRequeued: includeRequeued,
                    limit: limit)
            }
            // delivery_id: the runbook goes from a dead letter to `deliveries show` with it.
            Output(json: json).list(
                letters.map(\.fields),
                columns: ["id", "job_id", "kind", "reason", "attempts", "dead_at", "delivery_id", "last_error"])
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one dead letter with its job's attempts.")
        @Argument(help: "The dead letter's id (not the job id).") var id: Int64
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let (letter, attempts) = try await withOperatorConnection(database) { connection in
                let deadLetters = DeadLetters(connection, schema: WebhookWorkerSchema.queue)
                guard let letter = try await deadLetters.get(id: id) else {
                    throw notFound("no dead letter with id \(id)")
                }
                return (letter, try await deadLetters.attempts(ofJob: letter.jobID))
            }
            let output = Output(json: json)
            if json {
                var fields = letter.fields
                fields["attempts_history"] = attempts.map { Output.present($0.fields) }
                output.object(fields, keys: [])
            } else {
                output.object(
                    letter.fields,
                    keys: [
                        "id", "job_id", "kind", "reason", "attempts", "max_attempts", "last_error", "delivery_id",
                        "created_at",
                        "dead_at", "requeued_at", "requeued_job_id",
                    ])
                print("payload       " + Output.text(letter.payload))
                print("")
                output.list(
                    attempts.map(\.fields), columns: ["attempt", "outcome", "worker_id", "finished_at", "error"])
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put dead letters back in the queue with fresh attempts.",
            discussion:
                """
                Give one dead letter's id, --all (optionally narrowed by --kind and --since), or --client for one \
                receiver's failed deliveries. Runs in batches.
                """
        )
        @Argument(help: "The dead letter's id.") var id: Int64?
        @Flag(help: "Requeue every dead letter not yet requeued (narrow with --kind, --since).") var all = false
        @Option(help: "With --all: only this kind.") var kind: String?
        @Option(help: "With --all: only those that died since (1h, 2d, or an ISO 8601 time).") var since: Since?
        @Option(
            help:
                """
                Only the webhook.deliver dead letters of this OAuth client (its id, public clientId, or key \
                client:<id>); implies --all.
                """)
        var client: String?
        @Option(help: "Dead letters per transaction.") var batchSize: Int = 500
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if id != nil && (all || client != nil) {
                throw ValidationError("give a dead letter id, or --all / --client, not both")
            }
            if id == nil && !all && client == nil { throw ValidationError("give a dead letter id, --all, or --client") }
            if id != nil && (kind != nil || since != nil) {
                throw ValidationError("--kind and --since go with --all or --client")
            }
            guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
        }

        func run() async throws {
            try await withOperatorConnection(database) { connection in
                let deadLetters = DeadLetters(connection, schema: WebhookWorkerSchema.queue)
                if let id {
                    let newID: Int64
                    do {
                        newID = try await deadLetters.requeue(id: id)
                    } catch let error as DeadLetters.RequeueError {
                        throw notFound(error.description)
                    }
                    if json {
                        Output(json: true).printJSON(["dead_letter_id": id, "job_id": newID])
                    } else {
                        print("requeued dead letter \(id) as job \(newID)")
                    }
                    return
                }
                var filter = DeadLetters.Filter(kind: kind, diedSince: since?.date)
                if let client {
                    let id = try await OAuthClientName(connection).id(for: client)
                    filter.ids = try await Deliveries(connection).deadLetterIDs(ofClient: id)
                }
                let summary = try await deadLetters.requeueAll(filter, batchSize: batchSize) { done, total in
                    if !json { progress("requeued \(done) of \(total)") }
                }
                endProgress()
                guard summary.matched > 0 else { throw notFound("no dead letters to requeue") }
                let (done, skipped) = (summary.requeued, summary.skippedAlreadyQueued)
                if json {
                    Output(json: true).printJSON(["requeued": done, "skipped_already_queued": skipped])
                } else {
                    print(
                        "requeued \(done) dead letter(s)"
                            + (skipped > 0 ? ", skipped \(skipped) whose job is already queued" : ""))
                }
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
            let deleted = try await withOperatorConnection(database) { connection in
                try await DeadLetters(connection, schema: WebhookWorkerSchema.queue).purge(
                    diedBefore: olderThan.cutoff, kind: kind, batchSize: batchSize
                ) {
                    progress("deleted \($0) dead letters")
                }
            }
            endProgress()
            print("deleted \(deleted) dead letter(s)")
        }
    }
}
