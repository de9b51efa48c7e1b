import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing
import WebhookWorkerSchema

/// `sql/job_queue/schema.sql` and `sql/webhook_delivery/schema.sql` are the schema as the
/// migrations leave it, one per owner, so that nobody rebuilds a function from the migrations
/// that changed it. Each is pg_dump's `--schema-only` output of a freshly migrated database,
/// normalized: the queue's, JobQueue's migrations alone in its default schema `job_queue`; the
/// deliveries', the objects of the worker's `webhook_worker` schema that JobQueue's migrations
/// alone (rendered for `webhook_worker`) do not create the same way.
@Suite("Schema snapshots", .timeLimit(.minutes(4)))
struct SchemaSnapshotTests {
    static let regenerate =
        "SCHEMA_SNAPSHOT_WRITE=1 scripts/with-postgres swift test --filter SchemaSnapshot"
        + " (or make schema-snapshot)"

    @Test("sql/job_queue/schema.sql is the queue's schema as its migrations leave it")
    func queueSnapshot() async throws {
        let dump = try await withTestDatabase(queue: .default) { database in
            try await SchemaDump.blocks(database, schema: JobQueueSchema.default.name)
        }
        try check(SchemaDump.text(dump), against: "sql/job_queue/schema.sql")
    }

    @Test("sql/webhook_delivery/schema.sql is the deliveries' part of webhook_worker as the migrations leave it")
    func deliverySnapshot() async throws {
        let whole = try await withTestDatabase { database in
            try await SchemaDump.blocks(database, schema: WebhookWorkerSchema.name)
        }
        let queue = try await withTestDatabase(queue: WebhookWorkerSchema.queue) { database in
            try await SchemaDump.blocks(database, schema: WebhookWorkerSchema.name)
        }
        let queueBlocks = Set(queue)
        let deliveries = whole.filter { !queueBlocks.contains($0) }
        try check(SchemaDump.text(deliveries), against: "sql/webhook_delivery/schema.sql")
    }

    private func check(_ text: String, against path: String) throws {
        let file = TestDatabase.repoRoot + "/" + path
        if ProcessInfo.processInfo.environment["SCHEMA_SNAPSHOT_WRITE"] == "1" {
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            return
        }
        let recorded = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        guard recorded != text else { return }
        let fresh = FileManager.default.temporaryDirectory.appendingPathComponent("schema-\(UUID().uuidString).sql")
        try text.write(to: fresh, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: fresh) }
        let diff = try ChildProcess.start("/usr/bin/diff", ["-u", file, fresh.path])
        _ = diff.waitBlocking()
        let message =
            "\(path) differs from a freshly migrated database; if the migrations are right, regenerate it with\n"
            + "    \(Self.regenerate)\n\(diff.output)"
        Issue.record(Comment(rawValue: message))
    }
}

/// pg_dump's `--schema-only` output of one schema, cut into its objects and normalized: no
/// owners, privileges, settings, version lines or pg_dump's own comments, nor (``timeless(_:)``)
/// what depends on the day.
enum SchemaDump {
    /// The dump's objects, in pg_dump's order, each its statements.
    static func blocks(_ database: TestDatabase, schema: String) async throws -> [String] {
        let (output, status) = try await ChildProcess.run(
            pgDump,
            ["--schema-only", "--no-owner", "--no-privileges", "--schema=\(schema)", "--dbname=\(database.conninfo)"],
            standardError: .merged)
        guard status == 0 else { throw TestFailure(message: "pg_dump exited with status \(status): \(output)") }
        return timeless(blocks(of: output))
    }

    /// Without what depends on the day the database was migrated: the history tables' daily
    /// partitions (named `<table>_pYYYYMMDD`, with their indexes), which the upkeep makes and
    /// drops, and the upper bound of their `_legacy` partition.
    static func timeless(_ blocks: [String]) -> [String] {
        blocks.filter { $0.range(of: "_p[0-9]{8}", options: .regularExpression) == nil }.map {
            $0.replacingOccurrences(
                of: "'[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\+00'", with: "'<a UTC midnight>'",
                options: .regularExpression)
        }
    }

    static func blocks(of dump: String) -> [String] {
        var blocks: [[Substring]] = []
        var inObject = false
        var lines = dump.split(separator: "\n", omittingEmptySubsequences: false)[...]
        while let line = lines.popFirst() {
            // Each object starts with pg_dump's header: "--", "-- Name: ...; Type: ...", "--". So
            // do the preamble (settings) and the trailer, which are left out.
            if line == "--", lines.first?.hasPrefix("-- ") == true, lines.dropFirst().first == "--" {
                let header = lines.removeFirst()
                lines.removeFirst()
                inObject = header.hasPrefix("-- Name: ")
                if inObject { blocks.append([]) }
                continue
            }
            // Between objects, pg_dump sets the tablespace and access method of the tables to come.
            let setting =
                line.hasPrefix("SET default_") || line.hasPrefix("\\restrict") || line.hasPrefix("\\unrestrict")
            guard inObject, !setting else { continue }
            blocks[blocks.count - 1].append(line)
        }
        return blocks.map { lines in
            var lines = lines[...]
            while lines.first?.isEmpty == true { lines.removeFirst() }
            while lines.last?.isEmpty == true { lines.removeLast() }
            return lines.joined(separator: "\n")
        }.filter { !$0.isEmpty }
    }

    static func text(_ blocks: [String]) -> String {
        "-- Generated from a freshly migrated database (SchemaSnapshotTests); do not edit. Regenerate with\n"
            + "-- make schema-snapshot.\n\n" + blocks.joined(separator: "\n\n") + "\n"
    }

    /// The newest server's pg_dump, as scripts/pg picks the newest server.
    static let pgDump: String = {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap { Int($0) }
        guard let newest = versions.max() else { return "/usr/bin/pg_dump" }
        return "\(root)/\(newest)/bin/pg_dump"
    }()
}
