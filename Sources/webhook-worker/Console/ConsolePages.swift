import Foundation
import JobQueue
import LibPQ
import WebhookDelivery

/// The console's pages, each written with ``HTML`` (so everything shown is escaped).
enum Pages {
    static let navigation: [(StaticString, String)] = [
        ("Overview", "/console"), ("Deliveries", "/console/deliveries"), ("Endpoints", "/console/endpoints"),
        ("Dead letters", "/console/dead-letters"), ("Jobs", "/console/jobs"), ("Audit", "/console/audit"),
    ]

    static func layout(_ title: String, _ context: PageContext?, _ body: (inout HTML) -> Void) -> String {
        var h = HTML()
        h.raw("<!doctype html>\n")
        h.element("html", ["lang": "en"]) { h in
            h.element("head") { h in
                h.void("meta", ["charset": "utf-8"])
                h.void("meta", ["name": "viewport", "content": "width=device-width, initial-scale=1"])
                h.element("title", text: "\(title) · webhook-worker console")
                h.void("link", ["rel": "stylesheet", "href": "/console/style.css"])
            }
            h.element("body") { h in
                h.element("header") { h in
                    h.element("span", ["class": "brand"], text: "webhook-worker")
                    if let context {
                        h.element("nav") { h in
                            for (label, href) in navigation {
                                let current =
                                    href == "/console" ? context.path == "/console" : context.path.hasPrefix(href)
                                h.element("a", ["href": href, "class": current ? "current" : nil]) { $0.raw(label) }
                            }
                        }
                        h.element("span", ["class": "who"]) { h in
                            h.text("signed in as \(context.actor)")
                            if context.readOnly { h.element("span", ["class": "badge"], text: "read-only") }
                        }
                        if context.canSignOut, let csrf = context.csrf {
                            h.element("form", ["method": "post", "action": "/console/logout", "class": "inline"]) { h in
                                h.void("input", ["type": "hidden", "name": "csrf", "value": csrf])
                                h.element("button", ["type": "submit", "class": "link"], text: "sign out")
                            }
                        }
                    }
                }
                h.element("main") { h in
                    if let flash = context?.flash {
                        h.element(
                            "p", ["class": flash.ok ? "flash ok" : "flash error", "role": "status"], text: flash.message
                        )
                    }
                    h.element("h1", text: title)
                    body(&h)
                }
            }
        }
        return h.output
    }

    /// A POST form with the CSRF token and the page to come back to, or nothing in read-only mode.
    static func actionForm(
        _ h: inout HTML, _ context: PageContext, action: String, label: String, danger: Bool = false,
        back: String? = nil, fields: (inout HTML) -> Void = { _ in }
    ) {
        guard !context.readOnly else { return }
        h.element("form", ["method": "post", "action": action, "class": "inline"]) { h in
            if let csrf = context.csrf { h.void("input", ["type": "hidden", "name": "csrf", "value": csrf]) }
            h.void("input", ["type": "hidden", "name": "back", "value": back ?? context.here])
            fields(&h)
            h.element("button", ["type": "submit", "class": danger ? "danger" : nil], text: label)
        }
    }

    static func hidden(_ h: inout HTML, _ name: String, _ value: String?) {
        guard let value else { return }
        h.void("input", ["type": "hidden", "name": name, "value": value])
    }

    static func table(_ h: inout HTML, _ headings: [String], empty: String, rows: Int, _ body: (inout HTML) -> Void) {
        guard rows > 0 else {
            h.element("p", ["class": "empty"], text: empty)
            return
        }
        h.element("table") { h in
            h.element("thead") { h in
                h.element("tr") { h in for heading in headings { h.element("th", text: heading) } }
            }
            h.element("tbody", [:], body)
        }
    }

    static func cells(_ h: inout HTML, _ values: [String]) {
        for value in values { h.element("td", text: value) }
    }

    static func input(_ h: inout HTML, _ label: String, _ name: String, _ value: String?, placeholder: String = "") {
        h.element("label") { h in
            h.text(label)
            h.void("input", ["type": "text", "name": name, "value": value ?? "", "placeholder": placeholder])
        }
    }

    static func select(_ h: inout HTML, _ label: String, _ name: String, _ choices: [String], _ value: String?) {
        h.element("label") { h in
            h.text(label)
            h.element("select", ["name": name]) { h in
                h.element("option", ["value": ""], text: "any")
                for choice in choices {
                    h.element(
                        "option", ["value": choice, "selected": choice == value ? "selected" : nil], text: choice)
                }
            }
        }
    }

    static func seconds(_ value: Double?) -> String {
        guard let value else { return "" }
        if value < 1 { return String(format: "%.0f ms", value * 1000) }
        if value < 120 { return String(format: "%.1f s", value) }
        if value < 7200 { return String(format: "%.1f min", value / 60) }
        return String(format: "%.1f h", value / 3600)
    }

    static func status(_ h: inout HTML, _ status: String) {
        h.element("span", ["class": "status \(status)"], text: status)
    }

    // MARK: login, messages

    static func login(message: String?) -> String {
        layout("Sign in", nil) { h in
            if let message { h.element("p", ["class": "flash error"], text: message) }
            h.element("form", ["method": "post", "action": "/console/login", "class": "login"]) { h in
                h.element("label") { h in
                    h.text("Console token")
                    h.void("input", ["type": "password", "name": "token", "autocomplete": "current-password"])
                }
                h.element("button", ["type": "submit"], text: "Sign in")
            }
            h.element(
                "p", ["class": "hint"],
                text: "A secret of WORKER_CONSOLE_TOKEN. Scripts send it as Authorization: Bearer instead.")
        }
    }

    static func message(_ title: String, _ text: String, _ context: PageContext) -> String {
        layout(title, context) { h in h.element("p", text: text) }
    }

    // MARK: overview

    static func overview(_ data: OverviewData, _ context: PageContext) -> String {
        let statistics = data.statistics
        return layout("Overview", context) { h in
            let waiting = statistics.waiting.reduce(0) { $0 + $1.waiting }
            let oldest = statistics.waiting.compactMap(\.oldestWaitSeconds).max()
            let succeeded = data.minutes.reduce(0) { $0 + $1.succeeded }
            let failed = data.minutes.reduce(0) { $0 + $1.failed }
            let deadLetters = statistics.deadLetters.reduce(0) { $0 + $1.deadLetters }
            h.element("div", ["class": "cards"]) { h in
                card(&h, "waiting jobs", "\(waiting)")
                card(&h, "oldest waiting", oldest.map { seconds($0) } ?? "none")
                card(&h, "attempts, last hour", "\(succeeded + failed)")
                card(
                    &h, "failure rate, last hour",
                    succeeded + failed == 0
                        ? "n/a" : String(format: "%.1f %%", 100 * Double(failed) / Double(succeeded + failed)))
                card(&h, "dead letters", "\(deadLetters)")
                card(&h, "replicas holding leases", "\(statistics.replicas.count)")
            }
            h.element("h2", text: "Attempts per minute, last hour")
            Chart.throughput(&h, data.minutes)

            h.element("h2", text: "Queue depth")
            table(&h, ["kind", "state", "jobs", "oldest"], empty: "The queue is empty.", rows: statistics.depth.count) {
                h in
                for row in statistics.depth {
                    h.element("tr") { h in
                        let age = row.oldestAgeSeconds
                        let oldest = age.map { $0 < 0 ? "next due in \(seconds(-$0))" : seconds($0) } ?? ""
                        cells(&h, [row.kind, row.state, "\(row.jobs)", oldest])
                    }
                }
            }
            h.element("h2", text: "Oldest runnable job waiting")
            table(&h, ["kind", "waiting", "oldest wait"], empty: "Nothing is waiting.", rows: statistics.waiting.count)
            { h in
                for row in statistics.waiting {
                    h.element("tr") { h in cells(&h, [row.kind, "\(row.waiting)", seconds(row.oldestWaitSeconds)]) }
                }
            }
            h.element("h2", text: "Replicas holding leases")
            table(
                &h, ["worker", "running", "next lease expiry"], empty: "No replica holds a lease.",
                rows: statistics.replicas.count
            ) {
                h in
                for row in statistics.replicas {
                    h.element("tr") { h in
                        cells(&h, [row.workerID, "\(row.running)", ConsoleTime.format(row.nextLeaseExpiry)])
                    }
                }
            }
            h.element("h2", text: "Paused kinds")
            table(&h, ["kind", "paused at", "by"], empty: "No kind is paused.", rows: statistics.pausedKinds.count) {
                h in
                for row in statistics.pausedKinds {
                    h.element("tr") { h in cells(&h, [row.kind, ConsoleTime.format(row.pausedAt), row.pausedBy ?? ""]) }
                }
            }
            h.element("h2", text: "Endpoints not sending normally")
            table(
                &h, ["OAuth client", "state", "failures in a row", "next probe", "last error"],
                empty: "Every endpoint is sending.", rows: data.endpoints.count
            ) { h in
                for row in data.endpoints {
                    h.element("tr") { h in
                        cells(
                            &h,
                            [
                                row.oauthClientID, row.state, "\(row.consecutiveFailures)",
                                ConsoleTime.format(row.nextProbeAt), row.lastError ?? "",
                            ])
                    }
                }
            }
        }
    }

    static func card(_ h: inout HTML, _ label: String, _ value: String) {
        h.element("div", ["class": "card"]) { h in
            h.element("div", ["class": "value"], text: value)
            h.element("div", ["class": "label"], text: label)
        }
    }
}
