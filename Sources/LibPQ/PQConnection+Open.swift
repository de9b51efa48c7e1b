import CLibPQ
import Dispatch
import Foundation
import Logging
import Synchronization

/// Opening a libpq connection, and the notices it receives.
extension PQConnection {
    /// A `PGconn` pointer handed from the connection's queue to its owner.
    struct Handle: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    /// Connects synchronously on the calling thread (the connection's queue, or the listener's
    /// thread), without blocking longer than `timeout` and giving up when `isCancelled` says so.
    static func openHandle(
        _ conninfo: String?, applicationName: String, timeout: Duration = .seconds(10),
        isCancelled: () -> Bool = { false }
    ) throws -> OpaquePointer {
        // Defaults first, the caller's conninfo after: with expand_dbname, later values win, so a
        // URI's own keepalive or application_name settings take precedence over ours.
        // tcp_user_timeout bounds how long sent data may go unacknowledged (a silent network), in
        // milliseconds; keepalives find a dead peer while idle.
        let pairs: [(String, String)] = [
            ("fallback_application_name", applicationName),
            ("keepalives", "1"),
            ("keepalives_idle", "15"),
            ("keepalives_interval", "5"),
            ("keepalives_count", "3"),
            ("tcp_user_timeout", "30000"),
            ("dbname", conninfo ?? ""),
        ]
        let keys = pairs.map { strdup($0.0) }
        let values = pairs.map { strdup($0.1) }
        defer {
            keys.forEach { free($0) }
            values.forEach { free($0) }
        }
        var keyPointers = keys.map { UnsafePointer<CChar>($0) } + [nil]
        var valuePointers = values.map { UnsafePointer<CChar>($0) } + [nil]
        // The non-blocking connect, so that a cancelled or timed-out attempt stops waiting.
        let started = keyPointers.withUnsafeMutableBufferPointer { k in
            valuePointers.withUnsafeMutableBufferPointer { v in
                PQconnectStartParams(k.baseAddress, v.baseAddress, 1)
            }
        }
        guard let conn = started else {
            throw PQError(code: .connectionFailed, message: "libpq could not allocate a connection")
        }
        func fail(_ message: String) -> PQError {
            let endpoint = endpoint(of: conn)
            PQfinish(conn)
            return PQError(code: .connectionFailed, message: "could not connect to \(endpoint): \(message)")
        }
        guard PQstatus(conn) != CONNECTION_BAD else { throw fail(errorMessage(conn)) }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var polling = PGRES_POLLING_WRITING
        while true {
            switch polling {
            case PGRES_POLLING_OK:
                return conn
            case PGRES_POLLING_FAILED:
                throw fail(errorMessage(conn))
            default:
                let events = polling == PGRES_POLLING_READING ? POLLIN : POLLOUT
                while true {
                    if isCancelled() {
                        PQfinish(conn)
                        throw CancellationError()
                    }
                    if clock.now >= deadline {
                        throw fail("timed out after \(timeout.components.seconds)s")
                    }
                    var descriptor = pollfd(fd: PQsocket(conn), events: Int16(events), revents: 0)
                    let ready = poll(&descriptor, 1, 100)
                    if ready > 0 || (ready < 0 && errno != EINTR) { break }
                }
                polling = PQconnectPoll(conn)
            }
        }
    }

    static func endpoint(of conn: OpaquePointer) -> String {
        let host = PQhost(conn).map { String(cString: $0) } ?? "localhost"
        let port = PQport(conn).map { String(cString: $0) } ?? ""
        let shownHost = host.hasPrefix("/") ? "socket \(host)" : host
        return port.isEmpty ? shownHost : "\(shownHost):\(port)"
    }

    static func errorMessage(_ conn: OpaquePointer) -> String {
        guard let text = PQerrorMessage(conn) else { return "unknown error" }
        return String(cString: text).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Receives libpq notices (`NOTICE`, `WARNING`) and logs them instead of printing to stderr.
final class NoticeSink: @unchecked Sendable {
    // Immutable after init; Logger is a value type.
    let logger: Logger
    init(logger: Logger) { self.logger = logger }

    func receive(_ result: OpaquePointer) {
        let severity = PQresultErrorField(result, Int32(UInt8(ascii: "V"))).map { String(cString: $0) } ?? "NOTICE"
        let message = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) } ?? ""
        let level: Logger.Level =
            switch severity {
            case "WARNING": .warning
            case "NOTICE", "INFO": .debug
            case "ERROR", "FATAL", "PANIC": .notice
            default: .trace
            }
        logger.log(level: level, "postgres \(severity.lowercased()): \(message)")
    }
}

let noticeReceiver: PQnoticeReceiver = { context, result in
    guard let context, let result else { return }
    Unmanaged<NoticeSink>.fromOpaque(context).takeUnretainedValue().receive(result)
}
