import Foundation
import LibPQ
import WebhookWorkerSchema

/// A database set up as docs/database.md describes production: the worker's schema owned and
/// migrated by a role of its own (`worker_owner`), the web app's tables owned by another
/// (`web_app_owner`), and the web app's role (`web_app`) and the worker's (`worker`) with exactly
/// the grants of the docs' marked SQL blocks, run as written with the roles' names made unique
/// (roles belong to the whole server, and tests run in parallel).
struct LeastPrivilegeDatabase: Sendable {
    /// The database, as the server's superuser (for checks and set-up only).
    let database: TestDatabase
    let suffix: String

    var workerOwner: String { "worker_owner_\(suffix)" }
    var worker: String { "worker_\(suffix)" }
    var webApp: String { "web_app_\(suffix)" }
    var webAppOwner: String { "web_app_owner_\(suffix)" }
    var roles: [String] { [workerOwner, worker, webApp, webAppOwner] }

    /// The conninfo of the database as `role` (the test server trusts loopback connections).
    func conninfo(as role: String) -> String {
        var components = URLComponents(string: database.conninfo)!
        components.user = role
        return components.string!
    }

    func withConnection<T>(as role: String, _ body: (PQConnection) async throws -> T) async throws -> T {
        try await PQConnection.withConnection(conninfo(as: role), logger: TestDatabase.logger, body)
    }

    /// Runs one statement as `role`.
    @discardableResult
    func query(
        as role: String, _ sql: String, _ bindings: [any PQEncodable] = []
    ) async throws
        -> PQResult
    {
        try await withConnection(as: role) { try await $0.query(PQQuery("", sql), bindings) }
    }

    static func create() async throws -> LeastPrivilegeDatabase {
        let suffix = String(UInt32.random(in: 0 ... .max), radix: 16)
        let name = "lp_\(suffix)"
        let server = TestDatabase.serverURL
        let setup = LeastPrivilegeDatabase(
            database: TestDatabase(name: name, conninfo: TestDatabase.withDatabase(server, name), admin: server),
            suffix: suffix)
        try await PQConnection.withConnection(server, logger: TestDatabase.logger) { admin in
            for role in setup.roles {
                try await admin.execute(script: "CREATE ROLE \(role) LOGIN", name: "createRole")
            }
            try await admin.execute(
                script: "CREATE DATABASE \(name) OWNER \(setup.webAppOwner)", name: "createDatabase")
        }
        do {
            try await setup.database.script(
                try setup.documentedGrants("worker_owner", in: "docs/database.md")
                    .replacingOccurrences(of: "DATABASE app ", with: "DATABASE \(name) "))
            try await setup.withConnection(as: setup.workerOwner) {
                try await WebhookWorkerSchema.migrator.migrate($0, logger: TestDatabase.logger)
            }
            let tables = try String(
                contentsOfFile: TestDatabase.repoRoot + "/sql/dev/001_app_tables.sql", encoding: .utf8)
            try await setup.withConnection(as: setup.webAppOwner) { connection in
                try await connection.execute(script: tables, name: "appTables")
                // The web app's own business: its role uses its own tables.
                try await connection.execute(
                    script: "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \(setup.webApp)",
                    name: "appGrants")
            }
            // Run as the superuser: a grant it makes on another role's object counts as that
            // owner's, as if the owner had run it.
            try await setup.database.script(try setup.documentedGrants("web_app", in: "docs/enqueueing.md"))
            try await setup.database.script(try setup.documentedGrants("worker", in: "docs/database.md"))
            try await setup.database.script(try setup.documentedGrants("web_app_owner", in: "docs/database.md"))
        } catch {
            await setup.drop()
            throw error
        }
        return setup
    }

    /// Installs both optional triggers as their documented installer, the web app tables' owner.
    func installOptionalTriggers() async throws {
        for file in ["enqueue_on_integration_account_insert.sql", "keep_retired_webhook_secrets.sql"] {
            let sql = try String(contentsOfFile: TestDatabase.repoRoot + "/sql/optional/" + file, encoding: .utf8)
            try await withConnection(as: webAppOwner) { try await $0.execute(script: sql, name: file) }
        }
    }

    func drop() async {
        await database.drop()
        guard let admin = try? await PQConnection.connect(TestDatabase.serverURL, logger: TestDatabase.logger)
        else { return }
        for role in roles {
            try? await admin.execute(script: "DROP ROLE IF EXISTS \(role)", name: "dropRole")
        }
        await admin.close()
    }

    /// The SQL block that follows `<!-- grants: ROLE ...-->` in `file`, with the example roles'
    /// names replaced by this database's.
    func documentedGrants(_ role: String, in file: String) throws -> String {
        let text = try String(contentsOfFile: TestDatabase.repoRoot + "/" + file, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard
            let marker = lines.firstIndex(where: {
                $0.trimmingCharacters(in: .whitespaces)
                    .hasPrefix("<!-- grants: \(role) ")
                    || $0.trimmingCharacters(in: .whitespaces) == "<!-- grants: \(role) -->"
            }),
            let open = lines[(marker + 1)...].firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "```sql" }
            ),
            open == marker + 1,
            let close = lines[(open + 1)...].firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "```" })
        else {
            throw TestFailure(message: "\(file) has no ```sql block right after <!-- grants: \(role) -->")
        }
        let sql = lines[(open + 1)..<close].joined(separator: "\n")
        let names = [
            "worker_owner": workerOwner, "web_app_owner": webAppOwner, "web_app": webApp, "worker": worker,
        ]
        // Whole words only: `webhook_worker` and `worker_owner` are not `worker`.
        return sql.replacing(/\b(worker_owner|web_app_owner|web_app|worker)\b/) { names[String($0.output.1)]! }
    }
}

/// Runs `body` with a fresh ``LeastPrivilegeDatabase``, dropped (with its roles) however it ends.
func withLeastPrivilegeDatabase<T>(_ body: (LeastPrivilegeDatabase) async throws -> T) async throws -> T {
    let setup = try await LeastPrivilegeDatabase.create()
    return try await withTeardown {
        try await body(setup)
    } teardown: {
        await setup.drop()
    }
}
