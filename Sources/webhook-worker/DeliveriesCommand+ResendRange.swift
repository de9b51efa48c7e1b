import Foundation
import LibPQ
import WebhookDelivery

extension DeliveriesCommand.Resend {
    /// `deliveries resend --client C --since T`: every matching delivery, in batches, audited.
    func resendRange() async throws {
        let until = until?.date ?? Date()
        let result = try await withOperatorConnection(database) { connection in
            let clientID: String = try await OAuthClientName(connection).id(for: client ?? "")
            let range = Deliveries.Range(
                client: clientID, from: since!.date, until: until, status: status.flatMap(Delivery.Status.init))
            let deliveries = Deliveries(connection)
            guard !dryRun else {
                return (range, try await deliveries.resend(range, batchSize: batchSize, dryRun: true))
            }
            // The batches committed so far, for the audit row of a run that stops early.
            var committed: Deliveries.RangeResend?
            do {
                let summary = try await deliveries.resend(range, batchSize: batchSize) { soFar in
                    committed = soFar
                    if !json {
                        progress(
                            "resent \(soFar.resent), skipped \(soFar.skippedLive) live, of \(soFar.matched) so far")
                    }
                }
                endProgress()
                try await audit(connection, range, summary, outcome: "ok")
                return (range, summary)
            } catch {
                endProgress()
                // What committed before the failure is recorded; the audit row's own failure is the lesser one.
                try? await audit(connection, range, committed, outcome: String("failed: \(error)".prefix(500)))
                throw error
            }
        }
        let (range, summary) = result
        guard summary.matched > 0 else {
            throw notFound("no delivery of client \(client ?? "") matches \(range.text)")
        }
        if json {
            var fields = range.auditDetail(nil) as [String: Any]
            fields["matched"] = summary.matched
            fields["resent"] = summary.resent
            fields["skipped_live"] = summary.skippedLive
            fields["batches"] = summary.batches
            fields["dry_run"] = dryRun
            Output(json: true).printJSON(fields)
        } else if dryRun {
            print(
                """
                \(summary.matched) deliver\(summary.matched == 1 ? "y matches" : "ies match") \(range.text): \
                would resend \(summary.resent), skip \(summary.skippedLive) already queued or in flight; \
                nothing changed (dry run)
                """)
        } else {
            print(
                """
                resent \(summary.resent) of \(summary.matched) matching deliver\(summary.matched == 1 ? "y" : "ies") \
                (\(range.text)); skipped \(summary.skippedLive) already queued or in flight; \
                \(summary.batches) batch\(summary.batches == 1 ? "" : "es")
                """)
        }
    }

    private func audit(
        _ connection: PQConnection, _ range: Deliveries.Range, _ summary: Deliveries.RangeResend?, outcome: String
    ) async throws {
        var detail = range.auditDetail(summary)
        detail["via"] = "cli"
        detail["batch_size"] = "\(batchSize)"
        try await AuditLog(connection).record(
            actor: "operator (\(actor.name))", action: "delivery.resend_range",
            target: "endpoint:client:\(range.client)",
            detail: detail, outcome: outcome)
    }
}

extension Deliveries.Range {
    /// The range, and the counts when given, as an audit row's detail (the CLI's and the console's).
    func auditDetail(_ summary: Deliveries.RangeResend?) -> [String: String] {
        var detail = [
            "client": client, "from": UTCTime.iso8601(from), "until": UTCTime.iso8601(until),
        ]
        if let status { detail["status"] = status.rawValue }
        if let user { detail["user"] = user }
        if let event { detail["event"] = event }
        if let integrationAccount { detail["integration_account"] = integrationAccount }
        if let summary {
            detail["matched"] = "\(summary.matched)"
            detail["resent"] = "\(summary.resent)"
            detail["skipped_live"] = "\(summary.skippedLive)"
        }
        return detail
    }

    /// What it takes, for people: "created 2026-12-06T21:00:00Z to 2026-12-06T23:00:00Z, status failed"
    var text: String {
        var text = "created \(UTCTime.iso8601(from, fractionDigits: 0)) to "
        text += UTCTime.iso8601(until, fractionDigits: 0)
        if let status { text += ", status \(status.rawValue)" }
        return text
    }
}
