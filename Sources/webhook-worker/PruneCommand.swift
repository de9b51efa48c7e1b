import ArgumentParser
import Foundation
import JobQueue
import LibPQ
import WebhookDelivery
import WebhookWorkerSchema

struct PruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Delete old attempt rows and finished deliveries, in batches.",
        discussion: """
            Removes job attempts and delivery attempts older than the age, and deliveries that \
            ended (delivered, failed, cancelled) longer ago, with their attempts, and operational \
            events (endpoint_events) recorded longer ago. Pending deliveries and dead letters are \
            kept (see dead-letters purge). Retired webhook secrets older than the secret overlap are \
            deleted too. The console's audit trail is kept unless \
            --audit-older-than is given (an audit trail often has a retention of its own).
            """)

    @Option(help: "Age beyond which rows go (e.g. 30d).") var olderThan: Age
    @Option(RunSettings.secretOverlap, summary: "Retired webhook secrets older than this are deleted.")
    var secretOverlap: String?
    @Option(help: "Also delete console audit entries older than this (e.g. 365d). Default: kept.")
    var auditOlderThan: Age?
    @Option(help: "Rows per batch.") var batchSize: Int = 5000
    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        guard batchSize > 0 else { throw ValidationError("--batch-size must be positive") }
    }

    func run() async throws {
        var read = SettingsReader(environment: ProcessInfo.processInfo.environment)
        let overlap: Duration = try read.duration(RunSettings.secretOverlap, secretOverlap)
        let cutoff = olderThan.cutoff
        let (jobAttempts, deliveries, events, secrets, audit) = try await withOperatorConnection(database) {
            connection in
            let jobAttempts = try await JobAttemptHistory(connection, schema: WebhookWorkerSchema.queue).prune(
                finishedBefore: cutoff, batchSize: batchSize
            ) {
                progress("deleted \($0) job attempts")
            }
            let deliveries = try await Deliveries(connection).prune(olderThan: cutoff, batchSize: batchSize) {
                label, deleted in
                progress("deleted \(deleted) \(label)")
            }
            let events = try await EndpointEvents(connection).prune(before: cutoff, batchSize: batchSize) {
                progress("deleted \($0) endpoint events")
            }
            let secrets = try await RetiredSecrets(connection).prune(olderThan: overlap)
            guard let auditOlderThan else { return (jobAttempts, deliveries, events, secrets, nil as Int?) }
            let audit = try await AuditLog(connection).prune(before: auditOlderThan.cutoff, batchSize: batchSize) {
                progress("deleted \($0) console audit entries")
            }
            return (jobAttempts, deliveries, events, secrets, audit)
        }
        endProgress()
        print(
            """
            deleted \(jobAttempts) job attempt(s), \(deliveries.attempts) delivery attempt(s), \
            \(deliveries.deliveries) finished deliveries, \(events) endpoint event(s), \(secrets) expired secret(s)\
            \(audit.map { ", \($0) console audit entr\($0 == 1 ? "y" : "ies")" } ?? "")
            """
        )
    }
}
