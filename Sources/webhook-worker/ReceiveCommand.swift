import ArgumentParser
import Foundation
import Synchronization
import UnixSignals
import WebhookDelivery
import WebhookReceiver

struct ReceiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "receive",
        abstract: "Listen for webhooks, print each one, and verify both signatures.",
        discussion: """
            A receiver for developing and testing webhook endpoints: it prints every request's \
            headers and body and checks X-Webhook-Secret and the Standard Webhooks signature \
            against --secret. Point an OAuth client's webhookUrl at it (with the worker's \
            --allow-http --allow-private-networks for a local address).
            """)

    @Option(help: "Port to listen on.") var port: Int = 8080
    @Option(help: "Address to listen on.") var host: String = "127.0.0.1"
    @Option(help: "The OAuth client's webhookSecret, to verify signatures. Env: WEBHOOK_SECRET.")
    var secret: String?
    @Option(help: "HTTP status to answer with (e.g. 500 or 410 to watch retries and dead letters).")
    var status: Int = 200
    @Option(help: "Exit after this many webhooks (0: run until interrupted).")
    var count: Int = 0
    @Flag(
        help:
            """
            One line per webhook instead of the full request: arrival time (Unix seconds), delivery id, connection \
            number.
            """
    )
    var quiet = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard (100...599).contains(status) else { throw ValidationError("--status must be 100 to 599") }
        guard count >= 0 else { throw ValidationError("--count must be 0 or more") }
    }

    func run() async throws {
        let secret =
            self.secret ?? ProcessInfo.processInfo.environment["WEBHOOK_SECRET"].flatMap { $0.isEmpty ? nil : $0 }
        let printer = WebhookPrinter(secret: secret, quiet: quiet)
        let (done, finish) = AsyncStream.makeStream(of: Void.self)
        // SIGINT/SIGTERM end the wait; the default handlers would kill the process before the
        // summary prints. Trapped before the banner: whoever waits for it may signal at once.
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        let status = self.status
        let count = self.count
        let server = try await WebhookReceiverServer.start(
            host: host, port: port, respond: { _ in .status(status, body: status < 300 ? "ok" : "failing on purpose") },
            onReceive: { request in
                if printer.print(request) >= count && count > 0 { finish.yield() }
            })
        FileHandleOutput.write("receiving webhooks on http://\(host):\(server.port)/ (answering \(status))\n")
        await withTaskGroup(of: Void.self) { group in
            group.addTask { for await _ in done { return } }
            group.addTask { for await _ in signals { return } }
            await group.next()
            group.cancelAll()
        }
        await server.stop()
        if printer.failures > 0 {
            FileHandleOutput.write("\(printer.failures) signature check(s) failed\n")
            throw CommandFailure.alreadyReported
        }
    }
}

/// Prints webhooks as they arrive and counts failed signature checks.
final class WebhookPrinter: Sendable {
    let secret: String?
    let quiet: Bool
    private let state = Mutex<(seen: Int, failures: Int)>((0, 0))

    init(secret: String?, quiet: Bool = false) {
        self.secret = secret
        self.quiet = quiet
    }

    var failures: Int { state.withLock { $0.failures } }

    /// Prints one webhook; returns how many have been seen.
    func print(_ request: ReceivedWebhook) -> Int {
        var lines: [String] = []
        let number = state.withLock { state in
            state.seen += 1
            return state.seen
        }
        if quiet {
            let line =
                String(format: "%.6f", request.receivedAt.timeIntervalSince1970)
                + " \(request.header("X-Webhook-Delivery") ?? "-") \(request.connection)\n"
            FileHandle.standardOutput.write(Data(line.utf8))
            return number
        }
        lines.append("── webhook \(number) " + String(repeating: "─", count: 50))
        lines.append("\(request.method) \(request.uri)")
        for (name, value) in request.headers { lines.append("\(name): \(value)") }
        lines.append("")
        // The body exactly as received: these are the bytes the signatures cover.
        lines.append(String(decoding: request.body, as: UTF8.self))
        lines.append("")
        var failed = 0
        if let secret {
            if let hex = request.header("X-Webhook-Secret") {
                let ok = WebhookSignature.verifyHex(hex, secret: secret, body: request.body)
                lines.append("X-Webhook-Secret (hex HMAC-SHA256 of the body): \(ok ? "valid" : "INVALID")")
                if !ok { failed += 1 }
            } else {
                lines.append("X-Webhook-Secret: not sent (the client has no webhookSecret?)")
            }
            if let signature = request.header("webhook-signature"), let id = request.header("webhook-id"),
                let timestamp = request.header("webhook-timestamp")
            {
                let ok = WebhookSignature.verifyStandard(
                    signature, secret: secret, id: id, timestamp: timestamp, body: request.body)
                lines.append("webhook-signature (Standard Webhooks): \(ok ? "valid" : "INVALID")")
                if !ok { failed += 1 }
            } else {
                lines.append("webhook-signature: not sent")
            }
        } else {
            lines.append(
                request.header("X-Webhook-Secret") == nil
                    ? "unsigned (the client has no webhookSecret)"
                    : "signed; pass --secret to verify")
        }
        state.withLock { $0.failures += failed }
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n\n").utf8))
        return number
    }
}
