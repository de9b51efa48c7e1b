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
    _ = try shell(
        """
        openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout '\(directory)/key.pem' -out \
        '\(directory)/cert.pem' 2>/dev/null
        """
    )
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

/// Runs `scripts/pg COMMAND DIR` and returns its output. (popen, not Foundation's Process, whose
/// waitUntilExit can hang when called from a Swift concurrency thread on Linux.)
func runScript(_ command: String, _ directory: String) throws -> String {
    try shell("'\(TestDatabase.repoRoot)/scripts/pg' \(command) '\(directory)'")
}

/// Runs a shell command line, returning its standard output; throws on a non-zero exit.
func shell(_ commandLine: String) throws -> String {
    guard let pipe = popen(commandLine, "r") else { throw TestFailure(message: "popen failed: \(commandLine)") }
    var output = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&buffer, 1, buffer.count, pipe)
        if count <= 0 { break }
        output.append(contentsOf: buffer[0..<count])
    }
    let status = pclose(pipe)
    guard status == 0 else { throw TestFailure(message: "\(commandLine) exited with status \(status)") }
    return String(decoding: output, as: UTF8.self)
}

/// The built `webhook-worker` binary (`swift build` puts it there before the tests run).
let workerBinary = TestDatabase.repoRoot + "/.build/debug/webhook-worker"

/// Runs a shell snippet with `$BIN` set to ``workerBinary``; returns its combined output and exit
/// status.
func runWorkerCommand(_ script: String, environment: [String: String] = [:]) throws -> (output: String, status: Int32) {
    let exports = environment.map { "export \($0.key)='\($0.value)'; " }.joined()
    let quoted = script.replacingOccurrences(of: "'", with: "'\\''")
    let output = try shell("bash -c '\(exports)BIN=\(workerBinary); \(quoted) 2>&1; echo \"exit=$?\"'")
    let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
    let statusLine = lines.last { $0.hasPrefix("exit=") } ?? "exit=-1"
    return (lines.filter { !$0.hasPrefix("exit=") }.joined(separator: "\n"), Int32(statusLine.dropFirst(5)) ?? -1)
}
