import Foundation
import JobQueue
import LibPQ
import Logging
import WebhookDelivery
import WebhookWorkerSchema

/// The actions' handlers (POST), one per route of ``Console/addRoutes(to:)``. Each runs in
/// ``perform(_:_:)``: one transaction with its audit row, then back to the page with a flash message.
extension Console {
    /// An action's audit row could not be written: thrown inside its transaction, so the action is
    /// undone with it.
    private struct AuditFailure: Error {
        let underlying: any Error
    }

    /// Runs `act` on a connection in a transaction that also writes its audit row; nil from `act`
    /// is no such action (404). The browser goes back to the form's `back`, or where the outcome says.
    func perform(
        _ context: ConsoleContext, _ act: (_ connection: PQConnection, _ by: String) async throws -> Outcome?
    ) async -> ConsoleResponse {
        let identity = context.signedIn
        let path = context.path
        let request = context.request
        let action = "POST \(path)"
        let outcome: Outcome
        do {
            // The action and its audit row commit together or not at all: an action that cannot be
            // recorded is not done.
            let done = try await database.transaction { connection -> Outcome? in
                guard let done = try await act(connection, "console:\(identity.actor)") else { return nil }
                do {
                    try await AuditLog(connection).record(
                        actor: identity.actor, action: done.action, target: done.target, detail: done.detail,
                        outcome: Self.auditOutcome(done))
                } catch {
                    throw AuditFailure(underlying: error)
                }
                return done
            }
            guard let done else { return .text(404, "no such action") }
            outcome = done
            log(identity.actor, outcome)
        } catch let failure as AuditFailure {
            logger.error(
                "console: an action was not done: its audit row could not be written",
                metadata: ["action": "\(action)", "error": "\(failure.underlying)"])
            return .text(500, "not done: the action could not be recorded in the audit table; see the worker's log")
        } catch {
            // Nothing was done (the transaction rolled back); the attempt is recorded on its own.
            let message: String
            if let error = error as? ConsoleInputError {
                message = error.message
            } else {
                logger.error("console: an action failed", metadata: ["action": "\(action)", "error": "\(error)"])
                message = "failed: \(error)"
            }
            outcome = Outcome(
                ok: false, message: message, action: action, target: path, location: Self.back(request) ?? "/console")
            log(identity.actor, outcome)
            _ = await record(
                identity.actor, action: action, target: path, detail: [:], outcome: Self.auditOutcome(outcome))
        }
        var response = ConsoleResponse.seeOther(
            outcome.locationWins ? outcome.location : Self.back(request) ?? outcome.location)
        response.headers.append(
            cookie(
                Self.flashCookie, Flash(ok: outcome.ok, message: outcome.message).cookieValue, maxAge: 60,
                request: request))
        return response
    }

    /// A path or a method with no action.
    func noSuchAction(_ context: ConsoleContext) async -> ConsoleResponse {
        await perform(context) { _, _ in nil }
    }

    private func deliveryID(_ context: ConsoleContext) throws -> UUID {
        let text = context.parameters.get("id") ?? ""
        guard let id = UUID(uuidString: text) else { throw ConsoleInputError("'\(text)' is not a delivery id") }
        return id
    }

    /// POST /console/deliveries/:id/resend
    func resendDelivery(_ context: ConsoleContext) async -> ConsoleResponse {
        await perform(context) { connection, _ in
            let id = try deliveryID(context)
            let text = id.lowercasedText
            do {
                let job = try await Deliveries(connection).resend(id)
                return Outcome(
                    ok: true, message: "Queued delivery \(text) again as job \(job).", action: "delivery.resend",
                    target: "delivery:\(text)", detail: ["job_id": "\(job)"], location: "/console/deliveries/\(text)")
            } catch let error as Deliveries.ResendError {
                return Outcome(
                    ok: false, message: error.description, action: "delivery.resend", target: "delivery:\(text)",
                    location: "/console/deliveries/\(text)")
            }
        }
    }

    /// The most deliveries one "Resend all matching" takes: it runs in the action's transaction,
    /// with its audit row. Larger ranges are for `deliveries resend --client`, a transaction per batch.
    static let rangeResendLimit = 10_000

    /// POST /console/deliveries/resend: the range its confirmation page counted (the form pins
    /// `from` and `until`), in batches within the action's transaction, one audit row for it all.
    func resendDeliveryRange(_ context: ConsoleContext) async -> ConsoleResponse {
        await perform(context) { connection, _ in
            let form = try DeliverySearchForm(context.request)
            guard form.until != nil else { throw ConsoleInputError("resend by range: the form gives no 'until'") }
            let range = try await form.range(connection, now: Date())
            let deliveries = Deliveries(connection)
            let counted = try await deliveries.resend(range, dryRun: true)
            guard counted.matched <= Self.rangeResendLimit else {
                throw ConsoleInputError(
                    """
                    \(counted.matched) deliveries match, more than the console resends at once \
                    (\(Self.rangeResendLimit)): use `webhook-worker deliveries resend --client`
                    """)
            }
            let summary = try await deliveries.resend(range)
            var message =
                "Resent \(summary.resent) of \(summary.matched) matching deliver\(summary.matched == 1 ? "y" : "ies")"
            if summary.skippedLive > 0 { message += "; skipped \(summary.skippedLive) already queued or in flight" }
            return Outcome(
                ok: true, message: message + ".", action: "delivery.resend_range",
                target: "endpoint:client:\(range.client)", detail: range.auditDetail(summary),
                location: "/console/deliveries")
        }
    }

    /// POST /console/deliveries/:id/cancel
    func cancelDelivery(_ context: ConsoleContext) async -> ConsoleResponse {
        await perform(context) { connection, _ in
            let id = try deliveryID(context)
            let text = id.lowercasedText
            let cancelled = try await Deliveries(connection).cancel(id: id)
            return Outcome(
                ok: cancelled.deliveries > 0,
                message: cancelled.deliveries > 0
                    ? "Cancelled delivery \(text)." : "The delivery is not pending: nothing to cancel.",
                action: "delivery.cancel", target: "delivery:\(text)",
                detail: ["jobs_removed": "\(cancelled.jobsRemoved)"], location: "/console/deliveries/\(text)")
        }
    }

    /// POST /console/deliveries/:id/<anything else>: the id is checked first, as by the two above.
    func unknownDeliveryAction(_ context: ConsoleContext) async -> ConsoleResponse {
        await perform(context) { _, _ in
            _ = try deliveryID(context)
            return nil
        }
    }

    /// POST /console/endpoints/enable and /console/endpoints/disable
    func setEndpoint(_ context: ConsoleContext, enable: Bool) async -> ConsoleResponse {
        await perform(context) { connection, by in
            guard let endpoint = context.request.field("endpoint") else { throw ConsoleInputError("which endpoint?") }
            let endpoints = Endpoints(connection)
            let key = try await endpoints.key(for: endpoint)
            let state = try await endpoints.setEnabled(key: key, enable, by: by)
            return Outcome(
                ok: true, message: "\(enable ? "Enabled" : "Disabled") \(key): now \(state ?? "closed").",
                action: enable ? "endpoint.enable" : "endpoint.disable", target: "endpoint:\(key)",
                location: "/console/endpoints")
        }
    }

    /// POST /console/endpoints/test: a `webhook.test` event to the endpoint, then its delivery's page.
    func testEndpoint(_ context: ConsoleContext) async -> ConsoleResponse {
        await perform(context) { connection, _ in
            guard let endpoint = context.request.field("endpoint") else { throw ConsoleInputError("which endpoint?") }
            let key = try await Endpoints(connection).key(for: endpoint)
            do {
                let sent = try await connection.transaction {
                    try await TestEvents($0).send(clientID: String(key.dropFirst("client:".count)))
                }
                let id = sent.deliveryID.lowercasedText
                return Outcome(
                    ok: true, message: "Queued a webhook.test event to \(key) as delivery \(id) (job \(sent.jobID)).",
                    action: "endpoint.test", target: "endpoint:\(key)",
                    detail: ["delivery_id": id, "job_id": "\(sent.jobID)"], location: "/console/deliveries/\(id)",
                    locationWins: true)
            } catch let refusal as TestEvents.Refusal {
                return Outcome(
                    ok: false, message: "Not sent: \(refusal.description).", action: "endpoint.test",
                    target: "endpoint:\(key)", location: "/console/endpoints")
            }
        }
    }

    /// POST /console/endpoints/ordering: `ordering` fifo or none.
    func setEndpointOrdering(_ context: ConsoleContext) async -> ConsoleResponse {
        await perform(context) { connection, _ in
            guard let endpoint = context.request.field("endpoint") else { throw ConsoleInputError("which endpoint?") }
            guard let text = context.request.field("ordering"), let ordering = EndpointOrdering(text: text) else {
                throw ConsoleInputError("the ordering must be \(EndpointOrdering.choices)")
            }
            let endpoints = Endpoints(connection)
            let key = try await endpoints.key(for: endpoint)
            let previous = try await endpoints.setOrdering(key: key, ordering)
            return Outcome(
                ok: true,
                message: ordering == .fifo
                    ? "\(key) now gets its deliveries one at a time, in the order they were created (FIFO)."
                    : "\(key) is no longer FIFO: its deliveries go as its limit allows.",
                action: "endpoint.set", target: "endpoint:\(key)",
                detail: ["ordering": ordering.rawValue, "previous_ordering": previous.rawValue],
                location: "/console/endpoints")
        }
    }

    /// POST /console/dead-letters/:id/retry
    func retryDeadLetter(_ context: ConsoleContext) async -> ConsoleResponse {
        await perform(context) { connection, _ in
            let text = context.parameters.get("id") ?? ""
            guard let id = Int64(text) else { throw ConsoleInputError("'\(text)' is not a dead letter id") }
            do {
                // Its own savepoint: a refusal is an error of the database, which would otherwise
                // abort the transaction that must still record it.
                let job = try await connection.transaction {
                    try await DeadLetters($0, schema: WebhookWorkerSchema.queue).requeue(id: id)
                }
                return Outcome(
                    ok: true, message: "Requeued dead letter \(id) as job \(job).", action: "dead_letter.retry",
                    target: "dead_letter:\(id)", detail: ["job_id": "\(job)"], location: "/console/dead-letters/\(id)")
            } catch let error as DeadLetters.RequeueError {
                return Outcome(
                    ok: false, message: error.description, action: "dead_letter.retry", target: "dead_letter:\(id)",
                    location: "/console/dead-letters/\(id)")
            }
        }
    }

    /// POST /console/dead-letters/retry: every dead letter the page's filter matches.
    func retryDeadLetters(_ context: ConsoleContext) async -> ConsoleResponse {
        await perform(context) { connection, _ in
            let filter = try DeadLetterFilter(context.request)
            let ids = try await filter.requeueableIDs(connection)
            let summary = try await DeadLetters(connection, schema: WebhookWorkerSchema.queue).requeueAll(
                DeadLetters.Filter(ids: ids))
            var message = "Requeued \(summary.requeued) of \(summary.matched) matching dead letter(s)"
            if summary.skippedAlreadyQueued > 0 {
                message += "; skipped \(summary.skippedAlreadyQueued) whose job is already queued"
            }
            return Outcome(
                ok: true, message: message + ".", action: "dead_letter.retry_all", target: "dead_letters",
                detail: filter.detail.merging(
                    ["matched": "\(summary.matched)", "requeued": "\(summary.requeued)"], uniquingKeysWith: { $1 }),
                location: "/console/dead-letters")
        }
    }

    /// POST /console/dead-letters/purge: exactly what the page lists with the same filters (beyond
    /// its first 200 rows), older than the age given.
    func purgeDeadLetters(_ context: ConsoleContext) async -> ConsoleResponse {
        await perform(context) { connection, _ in
            guard let text = context.request.field("older_than"), let age = DurationText.parse(text), age > .zero
            else {
                throw ConsoleInputError("give an age to purge beyond, like 30d or 12h")
            }
            let filter = try DeadLetterFilter(context.request)
            let deleted = try await filter.purge(connection, diedBefore: Date().addingTimeInterval(-age.totalSeconds))
            return Outcome(
                ok: true, message: "Deleted \(deleted) matching dead letter(s) older than \(text).",
                action: "dead_letter.purge", target: "dead_letters",
                detail: filter.detail.merging(
                    ["older_than": text, "deleted": "\(deleted)"], uniquingKeysWith: { $1 }),
                location: "/console/dead-letters")
        }
    }

    /// POST /console/jobs/pause and /console/jobs/resume
    func setKindPaused(_ context: ConsoleContext, pause: Bool) async -> ConsoleResponse {
        await perform(context) { connection, by in
            guard let kind = context.request.field("kind"), kind.count <= 200 else {
                throw ConsoleInputError("which kind?")
            }
            let pausedKinds = PausedKinds(connection, schema: WebhookWorkerSchema.queue)
            let changed = pause ? try await pausedKinds.pause(kind, by: by) : try await pausedKinds.resume(kind)
            let message =
                pause
                ? (changed ? "Paused \(kind): no replica claims it until resumed." : "\(kind) was paused already.")
                : (changed ? "Resumed \(kind)." : "\(kind) was not paused.")
            return Outcome(
                ok: true, message: message, action: pause ? "kind.pause" : "kind.resume", target: "kind:\(kind)",
                location: "/console/jobs")
        }
    }
}

extension Console {
    /// POST /console/endpoints/limits: the endpoint's max in flight and rate limit as the form
    /// gives them (blank or `none`: adaptive, and no rate limit).
    func setEndpointLimits(_ context: ConsoleContext) async -> ConsoleResponse {
        await perform(context) { connection, by in
            guard let endpoint = context.request.field("endpoint") else { throw ConsoleInputError("which endpoint?") }
            let max: EndpointLimits.Change<Int>
            let rate: EndpointLimits.Change<Double>
            do throws(EndpointLimits.InvalidLimit) {
                max = try EndpointLimits.parseMaxInFlight(context.request.field("max_in_flight") ?? "none")
                rate = try EndpointLimits.parseRateLimit(context.request.field("rate_limit") ?? "none")
            } catch {
                throw ConsoleInputError("Not set: \(error.description).")
            }
            guard let key = try await Endpoints(connection).existingKey(for: endpoint) else {
                throw ConsoleInputError("Not set: no OAuth client '\(endpoint)'.")
            }
            let limits = try await Endpoints(connection).setLimits(key: key, maxInFlight: max, rateLimit: rate, by: by)
            let maxText = limits.maxInFlight.map(String.init) ?? "adaptive"
            let rateText = limits.rateLimit.map { EndpointLimits.format(rate: $0) + "/s" } ?? "none"
            return Outcome(
                ok: true, message: "Set \(key): max in flight \(maxText), rate limit \(rateText).",
                action: "endpoint.set_limits", target: "endpoint:\(key)",
                detail: [
                    "max_in_flight": max.text { String($0) }, "rate_limit": rate.text(EndpointLimits.format(rate:)),
                ],
                location: "/console/endpoints")
        }
    }
}
