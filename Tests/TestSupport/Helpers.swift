import Foundation
import NIOSSL
import Synchronization

/// A thread-safe call counter for receivers.
final class Counter: Sendable {
    private let value = Mutex(0)
    func next() -> Int {
        value.withLock {
            $0 += 1; return $0
        }
    }
}

/// A TLS configuration with a fresh self-signed certificate (from the openssl command).
func selfSignedTLS() throws -> TLSConfiguration {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let openssl = try ChildProcess.start(
        "openssl",
        [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout",
            directory + "/key.pem", "-out", directory + "/cert.pem",
        ])
    guard openssl.waitBlocking() == 0 else { throw TestFailure(message: "openssl req failed: \(openssl.output)") }
    return TLSConfiguration.makeServerConfiguration(
        certificateChain: try NIOSSLCertificate.fromPEMFile(directory + "/cert.pem").map { .certificate($0) },
        privateKey: .privateKey(try NIOSSLPrivateKey(file: directory + "/key.pem", format: .pem)))
}

struct TestFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

/// Runs `scripts/pg COMMAND DIR` and returns its output.
@discardableResult
func runScript(_ command: String, _ directory: String) throws -> String {
    try checkedOutput(TestDatabase.repoRoot + "/scripts/pg", [command, directory])
}

/// The built `webhook-worker` binary (`swift build` puts it there before the tests run).
let workerBinary = TestDatabase.repoRoot + "/.build/debug/webhook-worker"

/// Runs the built binary with `arguments` to its end: its output (standard output and, unless
/// told otherwise, standard error) and exit status.
func runWorker(
    _ arguments: [String], environment: [String: String] = [:], input: String? = nil,
    standardError: ChildProcess.StandardError = .merged, timeout: Duration = .seconds(120)
) async throws -> (output: String, status: Int32) {
    try await ChildProcess.run(
        workerBinary, arguments, environment: environment, input: input, standardError: standardError,
        timeout: timeout)
}

/// Starts the built binary with `arguments` in the background.
func startWorker(_ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
    try ChildProcess.start(workerBinary, arguments, environment: environment)
}
