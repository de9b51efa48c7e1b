import CLibPQ
import Foundation
import Logging
import Synchronization

/// LISTEN on a dedicated connection and its own thread, delivering notifications as an
/// `AsyncSequence` of ``Event``s.
///
/// The thread waits with `poll()` on the connection's socket, so it costs nothing while idle and
/// never occupies Swift's cooperative threads. When the server goes away or the backend is
/// terminated, the listener reconnects with backoff (100 ms doubling to 5 s) and says so with
/// ``Event/connected(reconnected:)``: notifications sent meanwhile were lost, so the consumer
/// should rescan whatever they were about.
///
/// Use it through ``withListener(conninfo:channels:logger:_:)``, which starts the thread and
/// stops it (and closes the connection) when the body ends.
public final class PQListener: Sendable {
    public enum Event: Sendable, Equatable {
        /// LISTEN is in place. `reconnected` is true after an outage: rescan.
        case connected(reconnected: Bool)
        /// The connection broke; notifications are lost until the next `connected`.
        case disconnected(message: String)
        case notification(channel: String, payload: String)
    }

    public let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let conninfo: String?
    private let channels: [String]
    private let applicationName: String
    private let logger: Logger
    private let stopped = Atomic<Bool>(false)
    private let connected = Atomic<Bool>(false)
    private let started = Atomic<Bool>(false)
    /// Signalled by the thread as it ends; ``stop()`` waits for that, within ``stopGrace``.
    private let threadDone = BoundedSignal()
    /// Receives the listening connection's notices, so that none reach standard error.
    private let notices: NoticeSink

    /// - Parameters:
    ///   - channels: channel names; each must be a plain lower-case identifier.
    ///   - applicationName: the listening connection's `application_name`, and its thread's name.
    public init(
        conninfo: String?, channels: [String], applicationName: String = PQListener.defaultApplicationName,
        logger: Logger
    ) {
        precondition(
            channels.allSatisfy { $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" } && !$0.isEmpty },
            "channel names must be plain identifiers")
        self.conninfo = conninfo
        self.channels = channels
        self.applicationName = applicationName
        self.logger = logger
        self.notices = NoticeSink(logger: logger)
        (events, continuation) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .bufferingNewest(1024))
    }

    /// Listens while `body` runs, then stops the thread and closes the connection.
    public static func withListener<T>(
        conninfo: String?, channels: [String], applicationName: String = PQListener.defaultApplicationName,
        logger: Logger, _ body: (PQListener) async throws -> T
    ) async rethrows -> T {
        let listener = PQListener(
            conninfo: conninfo, channels: channels, applicationName: applicationName, logger: logger)
        listener.start()
        return try await withTeardown {
            try await body(listener)
        } teardown: {
            await listener.stop()
        }
    }

    /// The program's name (``PQConnection/defaultApplicationName``) followed by `-listen`.
    public static let defaultApplicationName = PQConnection.defaultApplicationName + "-listen"

    /// True while LISTEN is in place (for readiness checks).
    public var isConnected: Bool { connected.load(ordering: .relaxed) }

    /// Starts the listening thread. Call once.
    public func start() {
        guard !started.exchange(true, ordering: .relaxed) else { return }
        let thread = Thread { [self] in
            self.loop()
            self.continuation.finish()
            self.threadDone.signal()
        }
        thread.name = applicationName
        thread.start()
    }

    /// How long ``stop()`` waits for the thread to end.
    public static let stopGrace: Duration = .seconds(1)

    /// Stops listening and ends `events`. Returns when the thread is done (it checks every 200 ms
    /// at most), or after ``stopGrace``: during a partition the thread may be stuck in libpq
    /// (`LISTEN` right after a connect) until TCP gives up, and a shutdown must not wait for
    /// that. The thread then closes the connection on its own when libpq returns.
    public func stop() async {
        stopped.store(true, ordering: .sequentiallyConsistent)
        if started.load(ordering: .relaxed) {
            await threadDone.wait(atMost: Self.stopGrace)
        }
        continuation.finish()
    }

    private var isStopped: Bool { stopped.load(ordering: .relaxed) }

    private func loop() {
        var conn: OpaquePointer?
        var everConnected = false
        var backoff = 0.1
        var reportedOutage = false
        defer { if let conn { PQfinish(conn) } }

        while !isStopped {
            guard let live = conn else {
                do {
                    let opened = try PQConnection.openHandle(
                        conninfo, applicationName: applicationName, isCancelled: { self.isStopped })
                    // `notices` lives as long as the listener, which outlives this connection.
                    PQsetNoticeReceiver(opened, noticeReceiver, Unmanaged.passUnretained(notices).toOpaque())
                    for channel in channels {
                        guard let result = PQexec(opened, "LISTEN \(channel)") else {
                            let error = PQError(
                                code: .connectionLost, message: PQConnection.errorMessage(opened),
                                statement: "listen")
                            PQfinish(opened)
                            throw error
                        }
                        let ok = PQresultStatus(result) == PGRES_COMMAND_OK
                        let error = ok ? nil : PQConnection.error(from: result, handle: opened, name: "listen")
                        PQclear(result)
                        if let error {
                            PQfinish(opened)
                            throw error
                        }
                    }
                    conn = opened
                    connected.store(true, ordering: .relaxed)
                    logger.debug("listening for job notifications", metadata: ["db.channels": "\(channels)"])
                    continuation.yield(.connected(reconnected: everConnected))
                    everConnected = true
                    reportedOutage = false
                    backoff = 0.1
                } catch {
                    if !reportedOutage {
                        logger.warning("LISTEN connection unavailable, retrying", metadata: ["error": "\(error)"])
                        continuation.yield(.disconnected(message: "\(error)"))
                        reportedOutage = true
                    }
                    sleep(seconds: backoff)
                    backoff = min(backoff * 2, 5)
                }
                continue
            }

            var descriptor = pollfd(fd: PQsocket(live), events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, 200)
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 { continue }
            var broken = ready < 0 || PQconsumeInput(live) == 0 || PQstatus(live) != CONNECTION_OK
            if !broken {
                while let notify = PQnotifies(live) {
                    let channel = String(cString: notify.pointee.relname)
                    let payload = notify.pointee.extra.map { String(cString: $0) } ?? ""
                    PQfreemem(notify)
                    continuation.yield(.notification(channel: channel, payload: payload))
                }
                broken = PQstatus(live) != CONNECTION_OK
            }
            if broken {
                let message = PQConnection.errorMessage(live)
                PQfinish(live)
                conn = nil
                connected.store(false, ordering: .relaxed)
                logger.warning("LISTEN connection lost, reconnecting", metadata: ["error": "\(message)"])
                continuation.yield(.disconnected(message: message))
                reportedOutage = true
            }
        }
        connected.store(false, ordering: .relaxed)
    }

    /// Sleeps in short steps so that `stop()` is not held up by a long backoff.
    private func sleep(seconds: Double) {
        var left = seconds
        while left > 0 && !isStopped {
            let step = min(left, 0.1)
            usleep(UInt32(step * 1_000_000))
            left -= step
        }
    }
}
