import ArgumentParser
import Foundation
import LibPQ

/// `endpoints`: the receivers' circuit breakers (webhook_worker.endpoints), for operators.
struct EndpointsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "endpoints",
        abstract: "Receiving endpoints (one per OAuth client): health, circuit state, enable and disable.",
        discussion: """
            An endpoint appears here once it has failed (or was disabled by hand); one that never \
            failed is healthy and has no row. ENDPOINT is the OAuth client's id ("OAuthClient".id), \
            its public clientId, or the key (client:<id>).
            """,
        subcommands: [List.self, Show.self, Enable.self, Disable.self])

    /// The endpoint's key from what an operator typed.
    static func key(_ text: String, db: OperatorDatabase) async throws -> String {
        if text.hasPrefix("client:") { return text }
        let rows = try await db.rows(
            "resolveEndpoint", #"SELECT id FROM "OAuthClient" WHERE id = $1 OR "clientId" = $1 ORDER BY id = $1 DESC LIMIT 1"#,
            [text])
        return "client:" + ((rows.first?["id"] as? String) ?? text)
    }

    static let health = """
        SELECT e.key, substr(e.key, 8) AS oauth_client_id, c.name AS client_name, c."clientId" AS client_public_id,
               e.state, e.consecutive_failures, e.failing_since, e.trips, e.next_probe_at, e.disabled_at, e.disabled_by,
               e.last_error, e.last_failure_at, e.last_success_at, e.failures, e.recoveries,
               (SELECT count(*) FROM webhook_worker.webhook_deliveries d
                WHERE d.oauth_client_id = substr(e.key, 8) AND d.status = 'pending') AS pending_deliveries,
               (SELECT round(100.0 * count(*) FILTER (WHERE a.http_status BETWEEN 200 AND 299) / nullif(count(*), 0), 1)
                FROM webhook_worker.delivery_attempts a JOIN webhook_worker.webhook_deliveries d USING (delivery_id)
                WHERE d.oauth_client_id = substr(e.key, 8) AND a.attempted_at > now() - interval '24 hours') AS success_rate_24h
        FROM webhook_worker.endpoints e
        LEFT JOIN "OAuthClient" c ON 'client:' || c.id = e.key
        """

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List endpoints that failed or were disabled, worst first.")
        @Option(help: "Only this state: closed, open, half_open or disabled.") var state: String?
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func validate() throws {
            if let state, !["closed", "open", "half_open", "disabled"].contains(state) {
                throw ValidationError("--state must be closed, open, half_open or disabled")
            }
        }

        func run() async throws {
            let db = try await OperatorDatabase.open(database)
            let rows = try await db.rows(
                "listEndpoints",
                """
                \(EndpointsCommand.health)
                WHERE ($1::text IS NULL OR e.state = $1)
                ORDER BY CASE e.state WHEN 'disabled' THEN 0 WHEN 'open' THEN 1 WHEN 'half_open' THEN 2 ELSE 3 END,
                         e.consecutive_failures DESC, e.key
                """, [state])
            await db.close()
            Output(json: json).list(
                rows,
                columns: ["oauth_client_id", "client_name", "state", "consecutive_failures", "pending_deliveries",
                    "success_rate_24h", "next_probe_at", "last_error"])
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one endpoint's health.")
        @Argument(help: "The endpoint: OAuth client id, public clientId, or key.") var endpoint: String
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let db = try await OperatorDatabase.open(database)
            let key = try await EndpointsCommand.key(endpoint, db: db)
            let rows = try await db.rows("showEndpoint", "\(EndpointsCommand.health) WHERE e.key = $1", [key])
            await db.close()
            guard let row = rows.first else {
                throw notFound("endpoint \(key) has never failed and was never disabled: it is healthy (closed)")
            }
            let output = Output(json: json)
            if json {
                output.printJSON(row)
            } else {
                output.object(
                    row,
                    keys: ["key", "oauth_client_id", "client_name", "client_public_id", "state", "consecutive_failures",
                        "failing_since", "trips", "next_probe_at", "disabled_at", "disabled_by", "last_error",
                        "last_failure_at", "last_success_at", "failures", "recoveries", "pending_deliveries",
                        "success_rate_24h"])
            }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enable an endpoint: close its circuit, forget its failures, and send its waiting deliveries now.",
            discussion: "Deliveries that ended as endpoint_disabled stay in the dead letters: requeue them with `dead-letters retry --client ID`.")
        @Argument(help: "The endpoint: OAuth client id, public clientId, or key.") var endpoint: String
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            try await setEnabled(endpoint, true, database: database)
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Disable an endpoint: nothing is sent to it; its waiting and new deliveries end as endpoint_disabled.")
        @Argument(help: "The endpoint: OAuth client id, public clientId, or key.") var endpoint: String
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            try await setEnabled(endpoint, false, database: database)
        }
    }

    static func setEnabled(_ endpoint: String, _ enabled: Bool, database: DatabaseOptions) async throws {
        let db = try await OperatorDatabase.open(database)
        let key = try await EndpointsCommand.key(endpoint, db: db)
        let actor = "operator (\(ProcessInfo.processInfo.environment["USER"] ?? "unknown user"))"
        let state: String? = try await db.execute(
            "setEndpointEnabled", "SELECT (webhook_worker.set_endpoint_enabled($1, $2, $3)).state AS state", [key, enabled, actor]
        ).first?.decodeIfPresent("state")
        await db.close()
        print("endpoint \(key) is now \(state ?? "?")")
    }
}

/// `jobs pause KIND` / `jobs resume KIND`.
struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "Pause and resume a kind of job across all replicas.",
        subcommands: [Pause.self, Resume.self])

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop every replica claiming KIND (within a poll interval); running jobs finish.")
        @Argument(help: "The kind, e.g. webhook.deliver.") var kind: String
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let db = try await OperatorDatabase.open(database)
            let actor = ProcessInfo.processInfo.environment["USER"] ?? "unknown user"
            try await db.execute(
                "pauseKind", "INSERT INTO webhook_worker.paused_kinds (kind, paused_by) VALUES ($1, $2) ON CONFLICT (kind) DO NOTHING",
                [kind, actor])
            await db.close()
            print("paused \(kind): replicas stop claiming it")
        }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Let replicas claim KIND again.")
        @Argument(help: "The kind.") var kind: String
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            let db = try await OperatorDatabase.open(database)
            let removed = try await db.execute("resumeKind", "DELETE FROM webhook_worker.paused_kinds WHERE kind = $1", [kind])
                .affectedRows
            await db.close()
            guard removed > 0 else { throw notFound("\(kind) was not paused") }
            print("resumed \(kind)")
        }
    }
}
