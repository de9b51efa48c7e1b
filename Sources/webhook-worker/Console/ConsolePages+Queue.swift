import Foundation
import JobQueue
import LibPQ
import WebhookDelivery

extension Pages {
    static func deadLetters(
        _ letters: [DeadLetter], filter: DeadLetterFilter, reasons: [String], clients: [UUID: String],
        _ context: PageContext
    ) -> String {
        layout("Dead letters", context) { h in
            h.element("form", ["method": "get", "action": "/console/dead-letters", "class": "search"]) { h in
                input(&h, "Kind", "kind", filter.kind, placeholder: "webhook.deliver")
                select(&h, "Reason", "reason", reasons, filter.reason)
                input(&h, "OAuth client", "client", filter.client, placeholder: "clientId or internal id")
                input(&h, "Died since", "since", filter.since, placeholder: "1h, 2d or a time")
                h.element("label", ["class": "check"]) { h in
                    h.void(
                        "input",
                        [
                            "type": "checkbox", "name": "include_requeued", "value": "1",
                            "checked": filter.includeRequeued ? "checked" : nil,
                        ])
                    h.text("include requeued")
                }
                h.element("button", ["type": "submit"], text: "Filter")
            }
            if !context.readOnly {
                h.element("div", ["class": "actions"]) { h in
                    actionForm(&h, context, action: "/console/dead-letters/retry", label: "Retry all matching") { h in
                        hidden(&h, "kind", filter.kind)
                        hidden(&h, "reason", filter.reason)
                        hidden(&h, "client", filter.client)
                        hidden(&h, "since", filter.since)
                    }
                    actionForm(
                        &h, context, action: "/console/dead-letters/purge", label: "Purge matching", danger: true
                    ) { h in
                        h.element("label") { h in
                            h.text("older than")
                            h.void("input", ["type": "text", "name": "older_than", "placeholder": "30d", "size": "6"])
                        }
                        hidden(&h, "kind", filter.kind)
                        hidden(&h, "reason", filter.reason)
                        hidden(&h, "client", filter.client)
                        hidden(&h, "since", filter.since)
                        hidden(&h, "include_requeued", filter.includeRequeued ? "1" : nil)
                    }
                }
            }
            table(
                &h,
                ["id", "kind", "reason", "attempts", "died", "delivery", "OAuth client", "last error", "requeued", ""],
                empty: "No dead letter matches.", rows: letters.count
            ) { h in
                for letter in letters {
                    h.element("tr") { h in
                        h.element("td") {
                            $0.element("a", ["href": "/console/dead-letters/\(letter.id)"], text: "\(letter.id)")
                        }
                        cells(
                            &h,
                            [
                                letter.kind, letter.reason, "\(letter.attempts)/\(letter.maxAttempts)",
                                ConsoleTime.format(letter.deadAt),
                            ])
                        let delivery = deliveryID(letter)
                        h.element("td") { h in
                            if let delivery { deliveryLink(&h, delivery) }
                        }
                        cells(
                            &h,
                            [
                                delivery.flatMap { clients[$0] } ?? "",
                                String((letter.lastError ?? "").prefix(160)),
                                letter.requeuedJobID.map { "as job \($0)" } ?? "",
                            ])
                        h.element("td") { h in
                            if letter.requeuedAt == nil {
                                actionForm(
                                    &h, context, action: "/console/dead-letters/\(letter.id)/retry", label: "Retry")
                            }
                        }
                    }
                }
            }
        }
    }

    /// A link to a delivery's page, its id as PostgreSQL writes it.
    static func deliveryLink(_ h: inout HTML, _ id: UUID) {
        let text = id.lowercasedText
        h.element("a", ["href": "/console/deliveries/\(text)", "class": "mono"], text: text)
    }

    /// The delivery a `webhook.deliver` dead letter was sending, when its payload names a valid one.
    static func deliveryID(_ letter: DeadLetter) -> UUID? {
        guard letter.kind == WebhookDeliverHandler.kind else { return nil }
        return try? DeliverPayload(letter.payload, kind: letter.kind).deliveryID
    }

    static func deadLetter(_ letter: DeadLetter, attempts: [JobAttemptRecord], _ context: PageContext) -> String {
        layout("Dead letter \(letter.id)", context) { h in
            h.element("dl", ["class": "facts"]) { h in
                func fact(_ label: String, _ value: String) {
                    h.element("dt", text: label)
                    h.element("dd", text: value)
                }
                fact("job", "\(letter.jobID)")
                fact("kind", letter.kind)
                fact("reason", letter.reason)
                fact("attempts", "\(letter.attempts) of \(letter.maxAttempts)")
                fact("last error", letter.lastError ?? "none")
                fact("created", ConsoleTime.format(letter.createdAt))
                fact("died", ConsoleTime.format(letter.deadAt))
                fact(
                    "requeued",
                    letter.requeuedAt.map { "\(ConsoleTime.format($0)) as job \(letter.requeuedJobID ?? 0)" } ?? "no")
                if let id = deliveryID(letter) {
                    h.element("dt", text: "delivery")
                    h.element("dd") { deliveryLink(&$0, id) }
                }
            }
            if letter.requeuedAt == nil {
                h.element("div", ["class": "actions"]) { h in
                    actionForm(&h, context, action: "/console/dead-letters/\(letter.id)/retry", label: "Retry")
                }
            }
            h.element("h2", text: "Attempts")
            table(
                &h, ["attempt", "outcome", "worker", "started", "finished", "error"], empty: "No attempt recorded.",
                rows: attempts.count
            ) { h in
                for attempt in attempts {
                    h.element("tr") { h in
                        cells(
                            &h,
                            [
                                "\(attempt.attempt)", attempt.outcome, attempt.workerID,
                                ConsoleTime.format(attempt.startedAt),
                                ConsoleTime.format(attempt.finishedAt), attempt.error ?? "",
                            ])
                    }
                }
            }
            h.element("h2", text: "Payload")
            h.element("pre", ["class": "body"], text: letter.payload.text)
        }
    }

    static func jobs(_ statistics: QueueStatistics, knownKinds: [String], _ context: PageContext) -> String {
        layout("Jobs", context) { h in
            let paused = Dictionary(statistics.pausedKinds.map { ($0.kind, $0) }, uniquingKeysWith: { a, _ in a })
            var kinds = Set(knownKinds)
            kinds.formUnion(statistics.depth.map(\.kind))
            kinds.formUnion(paused.keys)
            h.element(
                "p", ["class": "hint"],
                text: "A paused kind is claimed by no replica until resumed; jobs already running finish.")
            table(&h, ["kind", "queued", "state", ""], empty: "", rows: kinds.count) { h in
                for kind in kinds.sorted() {
                    let queued = statistics.depth.filter { $0.kind == kind }.reduce(0) { $0 + $1.jobs }
                    h.element("tr") { h in
                        cells(&h, [kind, "\(queued)"])
                        h.element("td") { h in
                            if let pause = paused[kind] {
                                status(&h, "paused")
                                h.element(
                                    "small",
                                    text: " since \(ConsoleTime.format(pause.pausedAt)) by \(pause.pausedBy ?? "?")")
                            } else {
                                status(&h, "running")
                            }
                        }
                        h.element("td") { h in
                            actionForm(
                                &h, context,
                                action: paused[kind] == nil ? "/console/jobs/pause" : "/console/jobs/resume",
                                label: paused[kind] == nil ? "Pause" : "Resume", danger: paused[kind] == nil
                            ) { h in hidden(&h, "kind", kind) }
                        }
                    }
                }
            }
        }
    }

    static func audit(_ entries: [AuditLog.Entry], _ context: PageContext) -> String {
        layout("Audit", context) { h in
            h.element(
                "p", ["class": "hint"],
                text: "What was done through this console (webhook_worker.console_audit), newest first.")
            table(
                &h, ["at", "who", "action", "target", "detail", "outcome"], empty: "Nothing done yet.",
                rows: entries.count
            ) { h in
                for entry in entries {
                    h.element("tr") { h in
                        cells(
                            &h,
                            [
                                ConsoleTime.format(entry.at), entry.actor, entry.action, entry.target, entry.detail,
                                entry.outcome,
                            ])
                    }
                }
            }
        }
    }
}

/// The overview's chart: attempts per minute as stacked bars (succeeded under failed), drawn on
/// the server as SVG; no script, no external file.
enum Chart {
    /// `HH:MM` of a time, UTC.
    static func hourMinute(_ date: Date) -> String {
        String(ConsoleTime.format(date).split(separator: " ").last?.prefix(5) ?? "")
    }

    static func throughput(_ h: inout HTML, _ minutes: [QueueStatistics.Minute]) {
        let width = 720.0
        let height = 160.0
        let top = 10.0
        let bottom = 20.0
        let left = 40.0
        let peak = max(1, minutes.map { $0.succeeded + $0.failed }.max() ?? 1)
        let slot = (width - left) / Double(max(minutes.count, 1))
        let scale = (height - top - bottom) / Double(peak)
        func number(_ value: Double) -> String { String(format: "%.1f", value) }
        h.element(
            "svg",
            [
                "class": "chart", "viewBox": "0 0 \(Int(width)) \(Int(height))", "role": "img",
                "xmlns": "http://www.w3.org/2000/svg",
                "aria-label": "attempts per minute over the last hour: succeeded and failed",
            ]
        ) { h in
            h.void(
                "line",
                [
                    "x1": number(left), "y1": number(height - bottom), "x2": number(width),
                    "y2": number(height - bottom), "class": "axis",
                ], selfClosing: true)
            h.element(
                "text", ["x": number(left - 4), "y": number(top + 8), "class": "tick", "text-anchor": "end"],
                text: "\(peak)")
            h.element(
                "text", ["x": number(left - 4), "y": number(height - bottom), "class": "tick", "text-anchor": "end"],
                text: "0")
            for (index, minute) in minutes.enumerated() {
                let x = left + Double(index) * slot + 1
                let okHeight = Double(minute.succeeded) * scale
                let failedHeight = Double(minute.failed) * scale
                let label =
                    "\(ConsoleTime.format(minute.start)): \(minute.succeeded) succeeded, \(minute.failed) failed"
                h.element("g") { h in
                    h.element("title", text: label)
                    if minute.succeeded > 0 {
                        h.void(
                            "rect",
                            [
                                "x": number(x), "y": number(height - bottom - okHeight), "width": number(slot - 2),
                                "height": number(okHeight), "class": "ok",
                            ], selfClosing: true)
                    }
                    if minute.failed > 0 {
                        h.void(
                            "rect",
                            [
                                "x": number(x), "y": number(height - bottom - okHeight - failedHeight),
                                "width": number(slot - 2), "height": number(failedHeight), "class": "failed",
                            ], selfClosing: true)
                    }
                }
            }
            if let first = minutes.first, let last = minutes.last {
                h.element(
                    "text", ["x": number(left), "y": number(height - 4), "class": "tick"], text: hourMinute(first.start)
                )
                h.element(
                    "text", ["x": number(width), "y": number(height - 4), "class": "tick", "text-anchor": "end"],
                    text: hourMinute(last.start) + " UTC")
            }
        }
        h.element("p", ["class": "legend"]) { h in
            h.element("span", ["class": "swatch ok"], text: "■")
            h.text(" succeeded  ")
            h.element("span", ["class": "swatch failed"], text: "■")
            h.text(" failed, lost, released or cancelled")
        }
    }
}
