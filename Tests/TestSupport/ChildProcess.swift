import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A program the tests start: its arguments are an array (no shell, no quoting), its environment
/// is the test process's plus `environment`, its standard input is `input` (or nothing), and its
/// standard output goes to a file, read with ``output`` (its standard error too, unless told
/// otherwise: see ``StandardError``).
///
/// Started with `posix_spawn`, waited for with `waitpid(WNOHANG)` between short sleeps, so
/// waiting never blocks a thread of Swift concurrency's pool (Foundation's `Process` could hang
/// in `waitUntilExit` there on Linux).
final class ChildProcess: Sendable {
    /// Where the process's standard error goes.
    enum StandardError: Sendable {
        /// Into ``output``, with standard output.
        case merged
        /// To the test process's own standard error.
        case inherited
        /// To /dev/null.
        case discarded
    }

    let pid: pid_t
    let command: String
    private let outputPath: String
    /// Set once `waitpid` has reaped the process: its pid may then belong to another.
    private let reaped = Atomic<Bool>(false)

    private init(pid: pid_t, command: String, outputPath: String) {
        self.pid = pid
        self.command = command
        self.outputPath = outputPath
    }

    deinit {
        unlink(outputPath)
    }

    /// Starts `executable` (a path, or a name looked up in `PATH`) with `arguments`.
    static func start(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], input: String? = nil,
        standardError: StandardError = .merged
    ) throws -> ChildProcess {
        let directory = FileManager.default.temporaryDirectory.path
        let outputPath = directory + "/child-\(UUID().uuidString).out"
        var inputPath = "/dev/null"
        if let input {
            inputPath = directory + "/child-\(UUID().uuidString).in"
            guard FileManager.default.createFile(atPath: inputPath, contents: Data(input.utf8)) else {
                throw TestFailure(message: "could not write \(inputPath)")
            }
        }
        defer { if input != nil { unlink(inputPath) } }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, inputPath, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        switch standardError {
        case .merged: posix_spawn_file_actions_adddup2(&actions, 1, 2)
        case .inherited: break
        case .discarded: posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        // Nothing else the test process holds goes to the child: a server that outlived its test
        // (a crash, a time limit) would otherwise keep, say, the build lock's descriptor open.
        if let closeFrom = addCloseFrom { _ = closeFrom(&actions, 3) }

        var merged = ProcessInfo.processInfo.environment
        merged.merge(environment) { _, new in new }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let spawn = executable.contains("/") ? posix_spawn : posix_spawnp
        let result = spawn(&pid, executable, &actions, nil, argv, envp)
        guard result == 0 else {
            throw TestFailure(message: "could not start \(executable): \(String(cString: strerror(result)))")
        }
        return ChildProcess(
            pid: pid, command: ([executable] + arguments).joined(separator: " "), outputPath: outputPath)
    }

    /// Whether `waitpid` has reaped the process.
    var isReaped: Bool { reaped.load(ordering: .sequentiallyConsistent) }

    /// Sends `signal` (SIGTERM, SIGINT, ...) to the process, unless it has been reaped.
    func signal(_ signal: Int32) {
        guard !reaped.load(ordering: .sequentiallyConsistent) else { return }
        kill(pid, signal)
    }

    /// Waits for the process to end; its exit status, or 128 + the signal that ended it (as a
    /// shell reports it). After `timeout`, the process is killed (SIGKILL) and 137 comes back.
    func wait(timeout: Duration = .seconds(120)) async -> Int32 {
        let deadline = ContinuousClock.now + timeout
        var status: Int32 = 0
        while true {
            let ended = waitpid(pid, &status, WNOHANG)
            if ended == pid { break }
            if ended < 0 { return -1 }
            if ContinuousClock.now >= deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return exitStatus(status)
    }

    /// Blocks the calling thread until the process ends: for the short scripts of synchronous
    /// fixtures (starting a server, making a certificate), as `popen` and `pclose` did.
    func waitBlocking() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        return exitStatus(status)
    }

    private func exitStatus(_ status: Int32) -> Int32 {
        reaped.store(true, ordering: .sequentiallyConsistent)
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// What the process wrote to its standard output and error so far.
    var output: String {
        (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    }

    /// Runs `executable` to its end: its output (standard output and error) and exit status.
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], input: String? = nil,
        standardError: StandardError = .merged, timeout: Duration = .seconds(120)
    ) async throws -> (output: String, status: Int32) {
        let process = try start(
            executable, arguments, environment: environment, input: input, standardError: standardError)
        let status = await process.wait(timeout: timeout)
        return (process.output, status)
    }
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which Swift's Glibc module
/// does not declare; nil where the C library has none.
#if canImport(Glibc)
    private let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? =
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np").map {
            unsafeBitCast(
                $0,
                to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
        }
#else
    private let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = nil
#endif

/// Runs `executable` to its end, blocking the calling thread, and returns its standard output
/// (its standard error goes to the test's); throws on a non-zero exit.
@discardableResult
func checkedOutput(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> String {
    let process = try ChildProcess.start(executable, arguments, environment: environment, standardError: .inherited)
    let status = process.waitBlocking()
    guard status == 0 else {
        throw TestFailure(message: "\(process.command) exited with status \(status): \(process.output)")
    }
    return process.output
}
