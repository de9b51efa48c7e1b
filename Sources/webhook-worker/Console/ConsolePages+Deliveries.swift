import Foundation
import JobQueue
import LibPQ
import WebhookDelivery

extension Pages {
    static func deliveries(_ form: DeliverySearchForm, _ found: [DeliverySummary], _ context: PageContext) -> String {
        layout("Deliveries", context) { h in
            h.element("form", ["method": "get", "action": "/console/deliveries", "class": "search"]) { h in
                input(&h, "OAuth client", "client", form.client, placeholder: "clientId or internal id")
                input(&h, "User", "user", form.user, placeholder: "user id")
                select(&h, "Status", "status", Delivery.Status.allCases.map(\.rawValue), form.status)
                input(&h, "Delivery id", "id", form.deliveryID, placeholder: "X-Webhook-Delivery")
                input(&h, "Event", "event", form.event, placeholder: "integration.connected")
                input(&h, "Created from", "from", form.from, placeholder: "1h, 2d or 2026-12-01T10:30")
                input(&h, "until", "until", form.until, placeholder: "a time, UTC")
                h.element("button", ["type": "submit"], text: "Search")
            }
            if form.isEmpty { h.element("p", ["class": "hint"], text: "The 50 newest deliveries; search to narrow.") }
            if !context.readOnly && form.canResendRange {
                // A GET: the next page counts what would be resent and asks to confirm.
                h.element("form", ["method": "get", "action": "/console/deliveries/resend", "class": "actions"]) { h in
                    for (name, value) in form.fields { hidden(&h, name, value) }
                    h.element("button", ["type": "submit", "id": "resend-matching"], text: "Resend all matching…")
                }
            } else if !context.readOnly && !form.isEmpty {
                h.element(
                    "p", ["class": "hint"],
                    text: "To resend every matching delivery, search with an OAuth client and a 'Created from'.")
            }
            table(
                &h,
                [
                    "created", "delivery", "OAuth client", "user", "event", "status", "attempts", "last HTTP",
                    "last error class", "last error",
                ], empty: "No delivery matches.", rows: found.count
            ) { h in
                for row in found {
                    let delivery = row.delivery
                    h.element("tr") { h in
                        h.element("td", text: ConsoleTime.format(delivery.createdAt))
                        h.element("td") { deliveryLink(&$0, delivery.deliveryID) }
                        h.element("td") { h in client(&h, row.clientName, row.clientPublicID, delivery.oauthClientID) }
                        cells(&h, [delivery.userID, delivery.event])
                        h.element("td") { status(&$0, delivery.status) }
                        cells(
                            &h,
                            [
                                "\(delivery.attempts)", delivery.lastHTTPStatus.map(String.init) ?? "",
                                row.lastErrorClass ?? "", String((delivery.lastError ?? "").prefix(160)),
                            ])
                    }
                }
            }
        }
    }

    /// The confirmation of "Resend all matching": the dry run's count, then the form that resends
    /// the same range (its times absolute, so that the range does not move meanwhile).
    static func resendRange(
        _ form: DeliverySearchForm, _ range: Deliveries.Range, _ counted: Deliveries.RangeResend, limit: Int,
        _ context: PageContext
    ) -> String {
        layout("Resend deliveries", context) { h in
            let search = "/console/deliveries?" + FormEncoding.encode(form.fields)
            let matching = "\(counted.matched) deliver\(counted.matched == 1 ? "y" : "ies")"
            h.element(
                "p", ["class": "verdict", "id": "resend-count"],
                text: """
                    \(matching) of OAuth client \(range.client) \(counted.matched == 1 ? "matches" : "match") \
                    (\(range.text)): \(counted.resent) would be \
                    resent, \(counted.skippedLive) skipped (a job for it is already queued or in flight). Nothing has \
                    changed yet.
                    """)
            if counted.matched > limit {
                h.element(
                    "p", ["class": "hint"],
                    text: """
                        More than the console resends at once (\(limit)): use `webhook-worker deliveries resend \
                        --client \(range.client) --since \(UTCTime.iso8601(range.from)) --until \
                        \(UTCTime.iso8601(range.until))`, which commits a batch at a time.
                        """)
            } else if counted.resent > 0 && !context.readOnly {
                h.element("div", ["class": "actions"]) { h in
                    actionForm(
                        &h, context, action: "/console/deliveries/resend", label: "Resend \(counted.resent) now",
                        back: search
                    ) { h in
                        hidden(&h, "client", range.client)
                        hidden(&h, "status", range.status?.rawValue)
                        hidden(&h, "user", range.user)
                        hidden(&h, "event", range.event)
                        hidden(&h, "from", UTCTime.iso8601(range.from, fractionDigits: 6))
                        hidden(&h, "until", UTCTime.iso8601(range.until, fractionDigits: 6))
                    }
                }
            }
            h.element("p") { h in h.element("a", ["href": search], text: "Back to the search") }
        }
    }

    static func client(_ h: inout HTML, _ name: String?, _ publicID: String?, _ id: String) {
        h.element("span", ["class": "client"]) { h in
            h.text(name ?? "(deleted client)")
            h.element("small", text: " \(publicID ?? "") · \(id)")
        }
    }

    /// One sentence answering "did the client get it, and if not, why".
    static func verdict(_ delivery: Delivery, _ attempts: [DeliveryAttemptRecord]) -> (ok: Bool?, text: String) {
        var why = "no attempt was made"
        if let last = attempts.last {
            let what = last.httpStatus.map { "HTTP \($0)" } ?? last.errorClass ?? "no response"
            why = "the last attempt, at \(ConsoleTime.format(last.attemptedAt)), got \(what)"
            if let error = last.error, error != what { why += " (\(error))" }
        }
        switch delivery.status {
        case "delivered":
            return (
                true, "Delivered at \(ConsoleTime.format(delivery.deliveredAt)) after \(delivery.attempts) attempt(s)."
            )
        case "pending":
            return (nil, "Not delivered yet, still being retried: \(why).")
        case "failed":
            var text = "Not delivered: gave up after \(delivery.attempts) attempt(s); \(why)."
            if let error = delivery.lastError, !text.contains(error) { text += " Last error: \(error)." }
            return (false, text)
        default:
            return (false, "Not delivered: cancelled (\(delivery.lastError ?? "no reason recorded")).")
        }
    }

    static func delivery(_ data: DeliveryPageData, _ context: PageContext) -> String {
        let delivery = data.delivery
        let id = delivery.deliveryID.lowercasedText
        return layout("Delivery \(id)", context) { h in
            let verdict = verdict(delivery, data.attempts)
            h.element(
                "p", ["class": verdict.ok == true ? "verdict ok" : verdict.ok == false ? "verdict error" : "verdict"],
                text: verdict.text)
            h.element("dl", ["class": "facts"]) { h in
                func fact(_ label: String, _ body: (inout HTML) -> Void) {
                    h.element("dt", text: label)
                    h.element("dd", [:], body)
                }
                fact("status") { status(&$0, delivery.status) }
                fact("OAuth client") { client(&$0, data.clientName, data.clientPublicID, delivery.oauthClientID) }
                fact("event") { $0.text(delivery.event) }
                fact("user") { $0.text(delivery.userID) }
                fact("integration account") { $0.text(delivery.integrationAccountID) }
                fact("attempts") { $0.text("\(delivery.attempts)") }
                fact("last HTTP status") { $0.text(delivery.lastHTTPStatus.map(String.init) ?? "none") }
                fact("last error") { $0.text(delivery.lastError ?? "none") }
                fact("created") { $0.text(ConsoleTime.format(delivery.createdAt)) }
                fact("delivered") { $0.text(ConsoleTime.format(delivery.deliveredAt)) }
                fact("source job") { $0.text("\(delivery.sourceJobID)") }
            }
            if !context.readOnly {
                h.element("div", ["class": "actions"]) { h in
                    actionForm(&h, context, action: "/console/deliveries/\(id)/resend", label: "Resend")
                    if delivery.status == "pending" {
                        actionForm(
                            &h, context, action: "/console/deliveries/\(id)/cancel", label: "Cancel", danger: true)
                    }
                }
            }
            h.element("h2", text: "Attempts")
            if data.attempts.isEmpty { h.element("p", ["class": "empty"], text: "No attempt yet.") }
            h.element("ol", ["class": "timeline"]) { h in
                for attempt in data.attempts {
                    let ok = attempt.httpStatus.map { (200..<300).contains($0) } ?? false
                    h.element("li", ["class": ok ? "ok" : "error"]) { h in
                        h.element("div", ["class": "when"]) { h in
                            h.element("strong", text: "#\(attempt.attempt)")
                            h.text(" \(ConsoleTime.format(attempt.attemptedAt)) · \(attempt.durationMilliseconds) ms")
                        }
                        h.element("div", ["class": "what"]) { h in
                            if let status = attempt.httpStatus {
                                h.element(
                                    "span", ["class": ok ? "status delivered" : "status failed"], text: "HTTP \(status)"
                                )
                            } else {
                                h.element("span", ["class": "status failed"], text: attempt.errorClass ?? "no response")
                            }
                            if let error = attempt.error, error != attempt.httpStatus.map({ "HTTP \($0)" }) {
                                h.element("span", ["class": "error"], text: " \(error)")
                            }
                        }
                        h.element(
                            "div", ["class": "meta"],
                            text:
                                "\(attempt.url) · worker \(attempt.workerID ?? "?") · "
                                + "job \(attempt.jobID.map(String.init) ?? "?")"
                        )
                        if let excerpt = attempt.responseExcerpt, !excerpt.isEmpty {
                            h.element("pre", ["class": "excerpt"], text: excerpt)
                        }
                    }
                }
            }
            h.element("h2", text: "Body (the exact bytes sent on every attempt)")
            h.element("pre", ["class": "body"], text: delivery.payload ?? "")
        }
    }

    static func endpoints(
        _ endpoints: [EndpointOverview], events: [EndpointEvents.Event], _ context: PageContext
    ) -> String {
        layout("Endpoints", context) { h in
            h.element(
                "p", ["class": "hint"],
                text: """
                    Success rate and latency over the last 24 hours; worst first. "Send test event" sends a \
                    webhook.test event (signed, like any webhook) to the endpoint now and shows its delivery. \
                    "Make FIFO" sends the endpoint's deliveries one at a time, in the order they were created; a \
                    failing one holds the others until it is delivered, dead-lettered or cancelled. \
                    Limits: a fixed number of deliveries in flight (blank: the adaptive limit) and requests per \
                    second (blank: none), across all replicas. "In flight of limit" is what runs now against the \
                    limit in force ("default": the worker's --endpoint-concurrency, where every endpoint starts); \
                    "throttled" is the pause the endpoint asked for with Retry-After.
                    """)
            table(
                &h,
                [
                    "OAuth client", "URL", "circuit", "success rate", "attempts", "mean / p95 latency",
                    "failures in a row", "pending", "in flight of limit", "throttled", "ordering", "limits",
                    "last error", "",
                ], empty: "No OAuth client has a webhook URL.", rows: endpoints.count
            ) { h in
                for row in endpoints {
                    h.element("tr") { h in
                        h.element("td") { client(&$0, row.clientName, row.clientPublicID, row.oauthClientID) }
                        h.element("td", ["class": "mono"], text: row.redactedURL ?? "")
                        h.element("td") { h in
                            status(&h, row.state)
                            if let by = row.disabledBy { h.element("small", text: " by \(by)") }
                        }
                        cells(
                            &h,
                            [
                                row.successRate.map { String(format: "%.1f %%", $0) } ?? "no attempts",
                                "\(row.attempts)",
                                row.meanLatencyMilliseconds.map {
                                    String(format: "%.0f / %.0f ms", $0, row.p95LatencyMilliseconds ?? 0)
                                } ?? "",
                                "\(row.consecutiveFailures)", "\(row.pendingDeliveries)", inFlight(row.load),
                                throttled(row.load), row.ordering,
                            ])
                        h.element("td") { endpointLimits(&$0, row, context) }
                        h.element("td", text: String((row.lastError ?? "").prefix(160)))
                        h.element("td") { h in
                            actionForm(
                                &h, context,
                                action: row.isDisabled ? "/console/endpoints/enable" : "/console/endpoints/disable",
                                label: row.isDisabled ? "Enable" : "Disable", danger: !row.isDisabled
                            ) { h in hidden(&h, "endpoint", row.key) }
                            actionForm(&h, context, action: "/console/endpoints/test", label: "Send test event") { h in
                                hidden(&h, "endpoint", row.key)
                            }
                            orderingForm(&h, context, row)
                        }
                    }
                }
            }
            operationalEvents(&h, events)
        }
    }

    /// Deliveries in flight across replicas against the limit the claim holds the endpoint to
    /// (its own, or the kind's where every endpoint starts), and those due and waiting.
    static func inFlight(_ load: EndpointLoad) -> String {
        let limit = load.limit.map(String.init) ?? "default"
        let running = "\(load.inFlight) of \(limit)"
        return load.waiting > 0 ? "\(running), \(load.waiting) waiting" : running
    }

    /// The pause the endpoint asked for (Retry-After) in all, and the one running now.
    static func throttled(_ load: EndpointLoad) -> String {
        var text = load.throttledSeconds > 0 ? String(format: "%.0f s in all", load.throttledSeconds) : "never"
        if let until = load.pausedUntil { text += ", paused until \(ConsoleTime.format(until))" }
        return text
    }

    /// The button that turns the endpoint's FIFO ordering on or off.
    static func orderingForm(_ h: inout HTML, _ context: PageContext, _ row: EndpointOverview) {
        let fifo = row.ordering == EndpointOrdering.fifo.rawValue
        actionForm(
            &h, context, action: "/console/endpoints/ordering", label: fifo ? "Make unordered" : "Make FIFO"
        ) { h in
            hidden(&h, "endpoint", row.key)
            hidden(&h, "ordering", fifo ? EndpointOrdering.none.rawValue : EndpointOrdering.fifo.rawValue)
        }
    }

    /// An endpoint's operator limits, and the form that sets them (blank: adaptive, no rate limit).
    static func endpointLimits(_ h: inout HTML, _ row: EndpointOverview, _ context: PageContext) {
        let rate = row.rateLimit.map(EndpointLimits.format(rate:))
        let max = row.maxInFlight.map(String.init) ?? "adaptive"
        h.element("span", ["class": "limits"], text: "max in flight \(max), rate \(rate.map { $0 + "/s" } ?? "none")")
        actionForm(&h, context, action: "/console/endpoints/limits", label: "Set limits") { h in
            hidden(&h, "endpoint", row.key)
            input(&h, "max in flight ", "max_in_flight", row.maxInFlight.map(String.init), placeholder: "adaptive")
            input(&h, "per second ", "rate_limit", rate, placeholder: "none")
        }
    }

    /// The latest operational events (endpoint_events), newest first: what the web app tells owners.
    static func operationalEvents(_ h: inout HTML, _ events: [EndpointEvents.Event]) {
        h.element("h2", text: "Operational events")
        h.element(
            "p", ["class": "hint"],
            text: "The latest 50: what the web app reads to tell an application's owner about its endpoint.")
        table(
            &h, ["at", "OAuth client", "event", "reason", "delivery", "failing since"],
            empty: "No operational events.", rows: events.count
        ) { h in
            for event in events {
                h.element("tr", ["class": "event"]) { h in
                    cells(
                        &h,
                        [
                            ConsoleTime.format(event.createdAt), event.oauthClientID, event.event,
                            String((event.reason ?? "").prefix(160)),
                        ])
                    h.element("td") { h in
                        if let id = event.deliveryID {
                            h.element("a", ["href": "/console/deliveries/\(id)", "class": "mono"], text: id)
                        }
                    }
                    h.element("td", text: ConsoleTime.format(event.failingSince))
                }
            }
        }
    }
}
