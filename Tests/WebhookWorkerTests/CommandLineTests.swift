import Foundation
@testable import TestSupport
import Testing
import WebhookReceiver

/// The built `webhook-worker` binary, run as operators run it.
@Suite("webhook-worker command line", .timeLimit(.minutes(4)))
struct CommandLineTests {
    static let binary = workerBinary

    /// Runs the binary with `arguments`; its combined output and exit status.
    static func run(
        _ arguments: [String], environment: [String: String] = [:], input: String? = nil,
        timeout: Duration = .seconds(120)
    ) async throws -> (output: String, status: Int32) {
        try await runWorker(arguments, environment: environment, input: input, timeout: timeout)
    }

    /// A command line as the tables below write it for a reader, `NAME=value ... $BIN arg ...`,
    /// split at spaces (no quoting: no value here holds a space) into the environment it sets
    /// and the binary's arguments.
    static func split(_ commandLine: String) -> (environment: [String: String], arguments: [String]) {
        let words = commandLine.split(separator: " ").map(String.init)
        let binary = words.firstIndex(of: "$BIN") ?? 0
        var environment: [String: String] = [:]
        for assignment in words[..<binary] {
            let parts = assignment.split(separator: "=", maxSplits: 1).map(String.init)
            environment[parts[0]] = parts.count > 1 ? parts[1] : ""
        }
        return (environment, Array(words[(binary + 1)...]))
    }

    @Test(
        "a bad setting exits 2 with one line naming it",
        arguments: [
            ("$BIN run --lease 5x", "--lease (WORKER_LEASE)"),
            ("$BIN run --concurrency 0", "--concurrency (WORKER_CONCURRENCY)"),
            ("WORKER_CONCURRENCY=lots $BIN run", "--concurrency (WORKER_CONCURRENCY)"),
            ("$BIN run --retry-schedule 5s,soon", "--retry-schedule (WEBHOOK_RETRY_SCHEDULE)"),
            ("$BIN run --lease 10s --request-timeout 15s", "--lease (WORKER_LEASE)"),
            ("WEBHOOK_ALLOW_HTTP=maybe $BIN run", "WEBHOOK_ALLOW_HTTP"),
            ("LOG_LEVEL=loud $BIN run", "--log-level (LOG_LEVEL)"),
            ("$BIN run --poll-interval=-1s", "--poll-interval (WORKER_POLL_INTERVAL)"),
            ("$BIN run --catch-up-interval soon", "--catch-up-interval (WEBHOOK_CATCH_UP_INTERVAL)"),
            ("$BIN run --catch-up-interval 1h --catch-up-window 30m", "--catch-up-window (WEBHOOK_CATCH_UP_WINDOW)"),
            ("$BIN run --console", "--console (WORKER_CONSOLE) needs --http-port"),
            ("$BIN run --console --http-port 9099", "WORKER_CONSOLE_TOKEN"),
            ("$BIN console --host 0.0.0.0", "WORKER_CONSOLE_TOKEN"),
            ("WORKER_CONSOLE_PORT=0 $BIN console", "--port (WORKER_CONSOLE_PORT)"),
            ("WORKER_CONSOLE_TOKEN=alice:short $BIN console", "WORKER_CONSOLE_TOKEN"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc $BIN run",
                "OTEL_EXPORTER_OTLP_PROTOCOL"
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_TRACES_SAMPLER=xray $BIN run",
                "OTEL_TRACES_SAMPLER"
            ),
            ("$BIN enqueue noop --traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-01", "--traceparent"),
        ])
    func badSettings(command: String, names: String) async throws {
        let (environment, arguments) = Self.split(command)
        let (output, status) = try await Self.run(
            arguments,
            environment: environment.merging(["DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"]) { set, _ in set }
        )
        #expect(status == 2, "\(output)")
        let lines = output.split(separator: "\n")
        #expect(lines.count == 1, "\(output)")
        #expect(output.contains(names), "\(output)")
    }

    @Test("help texts print no line-continuation backslashes")
    func helpHasNoBackslashes() async throws {
        for command in [["secrets", "retire"], ["run"], ["dead-letters", "retry"], ["endpoints"], ["receive"]] {
            let (output, status) = try await Self.run(command + ["--help"])
            #expect(status == 0, "\(command): \(output)")
            #expect(!output.contains("\\"), "\(command): \(output)")
        }
    }

    @Test("--version prints the version and exits 0")
    func version() async throws {
        let (output, status) = try await Self.run(["--version"])
        #expect(status == 0)
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3, "\(output)")
    }

    @Test("receive ends on SIGTERM and on SIGINT with status 0, not killed by the signal")
    func receiveStopsOnSignals() async throws {
        for signal in [SIGTERM, SIGINT] {
            let receiver = try startWorker(["receive", "--port", "0"])
            #expect(await eventually { receiver.output.contains("receiving webhooks on") }, "\(receiver.output)")
            receiver.signal(signal)
            let status = await receiver.wait(timeout: .seconds(60))
            #expect(status == 0, "signal \(signal): \(receiver.output)")
        }
    }

    @Test("an unreachable database is one clear line without the password, exit 1")
    func unreachableDatabase() async throws {
        let (output, status) = try await Self.run(
            ["migrate", "--database-url", "postgresql://ops:pa55word@127.0.0.1:1/app"])
        #expect(status == 1)
        #expect(output.contains("127.0.0.1:1"))
        #expect(!output.contains("pa55word"))
        // libpq's message has its hint on a second line; the program prints one.
        #expect(output.trimmingCharacters(in: .newlines).split(separator: "\n").count == 1, "\(output)")
    }

    @Test("run exits 1 with a readable error when its HTTP port is taken, after closing what it opened")
    func httpPortInUse() async throws {
        try await withTestDatabase(appTables: true) { database in
            let occupant = try await WebhookReceiverServer.start { _ in .ok }
            let (output, status) = try await Self.run(
                ["run", "--http-port", "\(occupant.port)", "--http-host", "127.0.0.1", "--log-level", "error"],
                environment: ["DATABASE_URL": database.conninfo], timeout: .seconds(60))
            await occupant.stop()
            // Not a crash (a signal's status) and not killed at the timeout (137).
            #expect(status == 1, "\(output)")
            #expect(output.localizedCaseInsensitiveContains("address already in use"), "\(output)")
        }
    }

    @Test("run delivers, logs JSON lines without secrets, and exits 0 on SIGTERM")
    func runAndStop() async throws {
        try await withTestDatabase(appTables: true) { database in
            let fixture = try await DeliveryFixture.make(database: database)
            let secret = "super-secret-value-\(UUID().uuidString)"
            try await fixture.addClient("signed", secret: secret)
            try await fixture.connectIntegration()
            let worker = try startWorker(
                [
                    "run", "--allow-http", "--allow-private-networks", "--log-format", "json", "--log-level", "debug",
                    "--poll-interval", "200ms",
                ], environment: ["DATABASE_URL": database.conninfo])
            #expect(await eventually { worker.output.contains(#""webhook delivered""#) })
            worker.signal(SIGTERM)
            let status = await worker.wait(timeout: .seconds(60))
            let output = worker.output
            #expect(status == 0, "\(output)")
            await fixture.receiver.stop()
            #expect(fixture.requests(to: "signed").count == 1)
            let lines = output.split(separator: "\n")
            #expect(lines.count > 5)
            var messages: [String] = []
            for line in lines {
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                #expect(object?["timestamp"] is String && object?["level"] is String, "\(line)")
                messages.append(object?["message"] as? String ?? "")
            }
            #expect(messages.contains("webhook delivered"))
            #expect(messages.contains("worker stopped"))
            let signature = try #require(fixture.requests(to: "signed").first?.header("X-Webhook-Secret"))
            for line in lines {
                #expect(!line.contains(secret) && !line.contains(signature) && !line.contains("mcp://core.ai/linear"))
            }
        }
    }
}
