import Foundation
import PackagePlugin

/// Compiles a module's SQL into it: for a target named `JobQueue`, the files of `sql/job_queue/`
/// (its numbered migrations and `statements/*.sql`) become `EmbeddedSQL`, a source generated in
/// the build folder by `embed-sql-tool`. The files are the command's inputs, so a plain
/// `swift build` after editing one compiles the new text; nothing generated is kept in git.
@main
struct EmbedSQL: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let folder = context.package.directoryURL
            .appendingPathComponent("sql")
            .appendingPathComponent(Self.snakeCase(target.name))
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("EmbeddedSQL.swift")
        var inputs: [URL] = []
        for directory in [folder, folder.appendingPathComponent("statements")] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            inputs += names.filter { $0.hasSuffix(".sql") }.sorted().map { directory.appendingPathComponent($0) }
        }
        return [
            .buildCommand(
                displayName: "Embedding sql/\(folder.lastPathComponent)/ in \(target.name)",
                executable: try context.tool(named: "embed-sql-tool").url,
                arguments: [output.path, folder.path],
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }

    /// `WebhookDelivery` -> `webhook_delivery`.
    static func snakeCase(_ name: String) -> String {
        var out = ""
        for character in name {
            if character.isUppercase, !out.isEmpty { out += "_" }
            out += character.lowercased()
        }
        return out
    }
}
