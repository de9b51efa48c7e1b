import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP proxy on 127.0.0.1 in front of the test PostgreSQL, for faults the real server cannot be
/// asked for: an outage that can be switched on and off (``cut()`` / ``restore()``), and a
/// connection that dies right after authentication, before its first statement
/// (``Mode/dropAtFirstQuery``), and a partition where nothing answers (``blackhole()``).
final class TCPProxy: Sendable {
    enum Mode: Sendable {
        case forward
        /// Closes a connection when the client sends its first query: the window between
        /// connect and the first statement.
        case dropAtFirstQuery
        /// Stops forwarding the client's bytes at its first query, leaving the connection open:
        /// a partition in the window between connect and the first statement.
        case stallAtFirstQuery
    }

    let port: Int
    private let listener: Int32
    private let upstreamPort: Int
    private struct State {
        var mode: Mode
        var down = false
        var blackholed = false
        /// Connections stalled by ``Mode/stallAtFirstQuery`` so far.
        var stalls = 0
        var sockets: Set<Int32> = []
        /// Accepted while blackholed: held open, never read, closed by ``stop()``.
        var held: Set<Int32> = []
        var stopped = false
    }
    private let state: Mutex<State>

    init(upstreamPort: Int, mode: Mode = .forward) throws {
        self.upstreamPort = upstreamPort
        self.state = Mutex(State(mode: mode))
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 64) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// The test server's conninfo with this proxy's port, SSL and GSS off (the proxy reads the
    /// protocol in the clear).
    static func conninfo(of server: String, database: String, port: Int) -> String {
        var components = URLComponents(string: TestDatabase.withDatabase(server, database))!
        components.host = "127.0.0.1"
        components.port = port
        components.queryItems = [.init(name: "sslmode", value: "disable"), .init(name: "gssencmode", value: "disable")]
        return components.string!
    }

    static var serverPort: Int { URLComponents(string: TestDatabase.serverURL)?.port ?? 5432 }

    func setMode(_ mode: Mode) { state.withLock { $0.mode = mode } }

    /// How many connections ``Mode/stallAtFirstQuery`` has stalled.
    var stalls: Int { state.withLock { $0.stalls } }

    /// An outage: every open connection is closed and new ones are refused, until ``restore()``.
    func cut() {
        // Under the lock: a socket still in the set is not closed yet.
        state.withLock { state in
            state.down = true
            for socket in state.sockets { shutdown(socket, Int32(SHUT_RDWR)) }
        }
    }

    func restore() { state.withLock { $0.down = false } }

    /// A network partition as a client sees it: nothing is refused or reset, nothing answers.
    /// Open connections stop forwarding (bytes are read and dropped, so the kernel still
    /// acknowledges them and TCP timeouts never fire), and new connections, a cancel request's
    /// among them, are accepted and then left alone. Lasts until ``stop()``.
    func blackhole() { state.withLock { $0.blackholed = true } }

    func stop() {
        cut()
        state.withLock { state in
            state.stopped = true
            for socket in state.held { close(socket) }
            state.held = []
        }
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private func acceptLoop() {
        defer { close(listener) }
        while !state.withLock({ $0.stopped }) {
            var descriptor = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 100) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            let (down, held, mode) = state.withLock { state -> (Bool, Bool, Mode) in
                let held = state.blackholed && !state.down
                if held { state.held.insert(client) }
                return (state.down, held, state.mode)
            }
            if held { continue }
            if down {
                close(client)
                continue
            }
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: UInt16(upstreamPort))
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else {
                close(client)
                close(server)
                continue
            }
            state.withLock { $0.sockets.formUnion([client, server]) }
            let pumps = Atomic<Int>(2)
            // The second pump to end closes both sockets: no descriptor is closed while the other
            // pump (or cut()) may still use it, so none is reused under it.
            let ended: @Sendable () -> Void = { [self] in
                guard pumps.subtract(1, ordering: .sequentiallyConsistent).newValue == 0 else { return }
                state.withLock { $0.sockets.subtract([client, server]) }
                close(client)
                close(server)
            }
            Thread { [self] in
                pump(from: client, to: server, atFirstQuery: mode)
                ended()
            }.start()
            Thread { [self] in
                pump(from: server, to: client, atFirstQuery: .forward)
                ended()
            }.start()
        }
    }

    /// Copies bytes until either side closes. With a mode other than `forward`, reads the client's
    /// side of the protocol (startup packets, then typed messages) and, at the first simple or
    /// extended query, closes both sockets or stops forwarding (``Mode``).
    private func pump(from source: Int32, to destination: Int32, atFirstQuery: Mode) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var pending: [UInt8] = []
        var startup = true
        var stalled = false
        outer: while true {
            let count = read(source, &buffer, buffer.count)
            if count <= 0 { break }
            if atFirstQuery != .forward && !stalled {
                pending.append(contentsOf: buffer[0..<count])
                while true {
                    if startup {
                        guard pending.count >= 8 else { break }
                        let length =
                            Int(pending[0]) << 24 | Int(pending[1]) << 16 | Int(pending[2]) << 8 | Int(pending[3])
                        let code =
                            Int(pending[4]) << 24 | Int(pending[5]) << 16 | Int(pending[6]) << 8 | Int(pending[7])
                        guard pending.count >= length else { break }
                        pending.removeFirst(length)
                        // SSLRequest and GSSENCRequest come before the real startup packet.
                        if code != 80_877_103 && code != 80_877_104 { startup = false }
                    } else {
                        guard pending.count >= 5 else { break }
                        if pending[0] == UInt8(ascii: "Q") || pending[0] == UInt8(ascii: "P") {
                            if atFirstQuery == .dropAtFirstQuery { break outer }
                            stalled = true
                            state.withLock { $0.stalls += 1 }
                            break
                        }
                        let length =
                            Int(pending[1]) << 24 | Int(pending[2]) << 16 | Int(pending[3]) << 8 | Int(pending[4])
                        guard pending.count >= length + 1 else { break }
                        pending.removeFirst(length + 1)
                    }
                }
            }
            if stalled || state.withLock({ $0.blackholed }) { continue }
            var sent = 0
            while sent < count {
                // MSG_NOSIGNAL: a peer that reset its side must end this copy, not the test process
                // (a write raised SIGPIPE).
                let written = buffer.withUnsafeBytes {
                    send(destination, $0.baseAddress! + sent, count - sent, Int32(MSG_NOSIGNAL))
                }
                if written <= 0 { break outer }
                sent += written
            }
        }
        shutdown(source, Int32(SHUT_RDWR))
        shutdown(destination, Int32(SHUT_RDWR))
    }
}
