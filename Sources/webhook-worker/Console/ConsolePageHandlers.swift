import Foundation
import JobQueue
import LibPQ
import Logging
import WebhookDelivery
import WebhookWorkerSchema

/// The pages' handlers (GET and HEAD), one per route of ``Console/addRoutes(to:)``: each reads
/// through the library types and renders with ``Pages``.
extension Console {
    /// What every page needs besides its data.
    func pageContext(_ context: ConsoleContext) -> PageContext {
        let identity = context.signedIn
        var csrf: String?
        if case .session(let nonce) = identity.method {
            csrf = sessions.csrfToken(actor: identity.actor, nonce: nonce)
        }
        return PageContext(
            actor: identity.actor, csrf: csrf, readOnly: readOnly, flash: context.flash,
            canSignOut: !sessions.tokens.isEmpty && identity.method != .bearer, path: context.path,
            query: context.request.query)
    }

    /// Renders a page: a bad field is a 400 page, a database that cannot answer a 500 page.
    private func page(
        _ context: ConsoleContext, _ render: (PageContext) async throws -> ConsoleResponse
    ) async -> ConsoleResponse {
        let page = pageContext(context)
        do {
            return try await render(page)
        } catch let error as ConsoleInputError {
            return .html(400, Pages.message("Bad request", error.message, page))
        } catch {
            logger.error("console: a page failed", metadata: ["path": "\(context.path)", "error": "\(error)"])
            return .html(500, Pages.message("Error", "The database could not answer; see the worker's log.", page))
        }
    }

    private func notFound(_ context: PageContext, _ message: String) -> ConsoleResponse {
        .html(404, Pages.message("Not found", message, context))
    }

    /// A path or a method with no page.
    func noSuchPage(_ context: ConsoleContext) async -> ConsoleResponse {
        notFound(pageContext(context), "No such page.")
    }

    /// /console
    func overviewPage(_ context: ConsoleContext) async -> ConsoleResponse {
        await page(context) { page in
            let data = try await database.withConnection { connection in
                OverviewData(
                    statistics: try await QueueStatistics.read(connection, schema: WebhookWorkerSchema.queue),
                    minutes: try await QueueStatistics.throughputPerMinute(
                        connection, schema: WebhookWorkerSchema.queue, minutes: 60),
                    endpoints: try await Endpoints(connection).notClosed())
            }
            return .html(Pages.overview(data, page))
        }
    }

    /// /console/deliveries: the latest 50, or the search's first 200.
    func deliveriesPage(_ context: ConsoleContext) async -> ConsoleResponse {
        await page(context) { page in
            let search = try DeliverySearchForm(context.request)
            let found: [DeliverySummary]? =
                search.isEmpty && context.request.query["all"] == nil
                ? try await database.withConnection { try await Deliveries($0).search(.init(), limit: 50) }
                : try await database.withConnection { try await Deliveries($0).search(search.search, limit: 200) }
            return .html(Pages.deliveries(search, found ?? [], page))
        }
    }

    /// /console/deliveries/resend: what "Resend all matching" would do (a dry run, nothing
    /// changes), and the form that confirms it with the range pinned to absolute times.
    func resendRangePage(_ context: ConsoleContext) async -> ConsoleResponse {
        await page(context) { page in
            let form = try DeliverySearchForm(context.request)
            let (range, counted) = try await database.withConnection {
                connection -> (Deliveries.Range, Deliveries.RangeResend) in
                let range = try await form.range(connection, now: Date())
                return (range, try await Deliveries(connection).resend(range, dryRun: true))
            }
            return .html(Pages.resendRange(form, range, counted, limit: Self.rangeResendLimit, page))
        }
    }

    /// /console/deliveries/:id
    func deliveryPage(_ context: ConsoleContext) async -> ConsoleResponse {
        await page(context) { page in
            let text = context.parameters.get("id") ?? ""
            guard let id = UUID(uuidString: text) else { return notFound(page, "'\(text)' is not a delivery id") }
            let data = try await database.withConnection { connection -> DeliveryPageData? in
                let deliveries = Deliveries(connection)
                guard let delivery = try await deliveries.get(id) else { return nil }
                let summary = try await deliveries.search(.init(deliveryID: id), limit: 1).first
                return DeliveryPageData(
                    delivery: delivery, clientName: summary?.clientName, clientPublicID: summary?.clientPublicID,
                    attempts: try await deliveries.attempts(of: id))
            }
            guard let data else { return notFound(page, "No delivery with id \(text).") }
            return .html(Pages.delivery(data, page))
        }
    }

    /// /console/endpoints
    func endpointsPage(_ context: ConsoleContext) async -> ConsoleResponse {
        await page(context) { page in
            let (endpoints, events) = try await database.withConnection { connection in
                (try await Endpoints(connection).overview(), try await EndpointEvents(connection).recent(limit: 50))
            }
            return .html(Pages.endpoints(endpoints, events: events, page))
        }
    }

    /// /console/dead-letters: the filter's first 200.
    func deadLettersPage(_ context: ConsoleContext) async -> ConsoleResponse {
        await page(context) { page in
            let filter = try DeadLetterFilter(context.request)
            let (letters, reasons, clients) = try await database.withConnection { connection in
                let letters = try await filter.list(connection)
                let deliveries = letters.compactMap(Pages.deliveryID)
                return (
                    letters,
                    try await DeadLetters(connection, schema: WebhookWorkerSchema.queue).reasons(),
                    try await Deliveries(connection).clientNames(of: deliveries)
                )
            }
            return .html(Pages.deadLetters(letters, filter: filter, reasons: reasons, clients: clients, page))
        }
    }

    /// /console/dead-letters/:id (and the GET of an action's path there, `retry` or `purge`,
    /// which is no id).
    func deadLetterPage(_ context: ConsoleContext) async -> ConsoleResponse {
        await page(context) { page in
            let text = context.parameters.get("id") ?? String(context.path.split(separator: "/").last ?? "")
            guard let id = Int64(text) else { return notFound(page, "'\(text)' is not a dead letter id") }
            let data = try await database.withConnection { connection -> (DeadLetter, [JobAttemptRecord])? in
                let deadLetters = DeadLetters(connection, schema: WebhookWorkerSchema.queue)
                guard let letter = try await deadLetters.get(id: id) else { return nil }
                return (letter, try await deadLetters.attempts(ofJob: letter.jobID))
            }
            guard let data else { return notFound(page, "No dead letter with id \(id).") }
            return .html(Pages.deadLetter(data.0, attempts: data.1, page))
        }
    }

    /// /console/jobs: every kind queued, paused or known (``knownKinds``).
    func jobsPage(_ context: ConsoleContext) async -> ConsoleResponse {
        await page(context) { page in
            let statistics = try await database.withConnection {
                try await QueueStatistics.read($0, schema: WebhookWorkerSchema.queue)
            }
            return .html(Pages.jobs(statistics, knownKinds: knownKinds, page))
        }
    }

    /// /console/audit: the latest 200 rows.
    func auditPage(_ context: ConsoleContext) async -> ConsoleResponse {
        await page(context) { page in
            let entries = try await database.withConnection { try await AuditLog($0).recent(limit: 200) }
            return .html(Pages.audit(entries, page))
        }
    }
}
