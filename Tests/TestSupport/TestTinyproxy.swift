import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A real HTTP proxy for the egress proxy's tests: Debian's tinyproxy (`NEED_TINYPROXY=1
/// scripts/ensure-deps` installs it), started in the foreground with a configuration file of its
/// own in a temporary folder, on a free loopback port, and stopped by ``stop()``.
///
/// It opens its connections to receivers from `outgoingAddress` (127.0.0.2 by default, another
/// loopback address), so a receiver can tell a request that came through it; its log
/// (``log``) has a line for each `CONNECT` it was asked for.
public final class TestTinyproxy: Sendable {
    public let port: Int
    let directory: String
    let process: ChildProcess

    public var url: String { "http://127.0.0.1:\(port)" }

    private init(port: Int, directory: String, process: ChildProcess) {
        self.port = port
        self.directory = directory
        self.process = process
    }

    /// Starts it and waits until it accepts connections. `allowedConnectPorts`: when not empty,
    /// `CONNECT` to any other port is refused (403), as an allow-list would.
    public static func start(
        outgoingAddress: String = "127.0.0.2", allowedConnectPorts: [Int] = []
    ) async throws -> TestTinyproxy {
        guard
            let executable = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"].first(
                where: FileManager.default.isExecutableFile)
        else {
            throw TestFailure(message: "tinyproxy is not installed (NEED_TINYPROXY=1 scripts/ensure-deps installs it)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tinyproxy-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let port = try freeLoopbackPort()
        var configuration = """
            Port \(port)
            Listen 127.0.0.1
            Bind \(outgoingAddress)
            Timeout 30
            MaxClients 50
            Allow 127.0.0.1
            DisableViaHeader Yes
            LogFile "\(directory)/tinyproxy.log"
            LogLevel Connect

            """
        for allowed in allowedConnectPorts { configuration += "ConnectPort \(allowed)\n" }
        try configuration.write(toFile: directory + "/tinyproxy.conf", atomically: true, encoding: .utf8)
        let process = try ChildProcess.start(executable, ["-d", "-c", directory + "/tinyproxy.conf"])
        let proxy = TestTinyproxy(port: port, directory: directory, process: process)
        let deadline = ContinuousClock.now + .seconds(10)
        while !Self.accepts(port: port) {
            guard ContinuousClock.now < deadline else {
                await proxy.stop()
                throw TestFailure(message: "tinyproxy did not start on port \(port): \(process.output)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return proxy
    }

    /// What it logged: a `Request (file descriptor N): CONNECT host:port HTTP/1.1` line per tunnel.
    public var log: String {
        (try? String(contentsOfFile: directory + "/tinyproxy.log", encoding: .utf8)) ?? ""
    }

    /// The targets of the `CONNECT` requests it received, in order (`127.0.0.1:8080`).
    public var connectTargets: [String] {
        log.split(separator: "\n").compactMap { line in
            guard let range = line.range(of: ": CONNECT ") else { return nil }
            return line[range.upperBound...].split(separator: " ").first.map(String.init)
        }
    }

    /// Kills it: tinyproxy may take seconds, or longer, to end on SIGTERM, and a test has nothing
    /// to flush. (Left running, it would also keep whatever descriptors the test process inherited,
    /// a lock file's among them.)
    public func stop() async {
        process.signal(SIGKILL)
        _ = await process.wait(timeout: .seconds(10))
        try? FileManager.default.removeItem(atPath: directory)
    }

    // A test that throws before it calls stop() still ends its proxy.
    deinit {
        guard !process.isReaped else { return }
        process.signal(SIGKILL)
        _ = process.waitBlocking()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Whether something accepts a TCP connection on 127.0.0.1:`port` now.
    private static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}
