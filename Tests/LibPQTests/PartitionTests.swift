import Dispatch
import Foundation
import LibPQ
@testable import TestSupport
import Testing

@Suite("LibPQ during a network partition", .timeLimit(.minutes(4)))
struct PartitionTests {
    /// During a partition `PQcancel` cannot reach the server and has no timeout of its own; a
    /// call abandoned on a connection blocks its queue until TCP gives up. Neither may hold the
    /// caller, nor a thread of Swift's cooperative pool: a shutdown must finish in seconds.
    @Test("cancelling, closing and shutting down take seconds during a partition, on no cooperative thread")
    func partition() async throws {
        try await withTestDatabase { database in
            let proxy = try TCPProxy(upstreamPort: TCPProxy.serverPort)
            defer { proxy.stop() }
            let conninfo = TCPProxy.conninfo(of: TestDatabase.serverURL, database: database.name, port: proxy.port)
            // One call more than Swift has cooperative threads: if each cancelled call held one,
            // none would be left for the heartbeat below.
            let width = ProcessInfo.processInfo.activeProcessorCount + 1
            let pool = PQConnectionPool(
                configuration: .init(
                    conninfo: conninfo, maxConnections: width, applicationName: "partition-test",
                    connectTimeout: .seconds(2)),
                logger: TestDatabase.logger)
            let single = try await PQConnection.connect(
                conninfo, applicationName: "partition-test", connectTimeout: .seconds(2), logger: TestDatabase.logger)
            let sleep = PQQuery("", "SELECT pg_sleep(30)")
            var calls = (0..<width).map { _ in
                Task { try await pool.withConnection { connection in try await connection.query(sleep) } }
            }
            calls.append(Task { try await single.query(sleep) })
            // Every call is running (its statement reached the server) before the partition.
            let running = try await eventually {
                try await database.count(
                    """
                    SELECT count(*) FROM pg_stat_activity WHERE application_name = 'partition-test' \
                    AND state = 'active' AND query = 'SELECT pg_sleep(30)'
                    """) == width + 1
            }
            try #require(running)
            proxy.blackhole()

            // On today's code every cooperative thread ends up blocked, so nothing in this test
            // could notice a bound passing: past it, a thread outside the pool heals the partition,
            // which unblocks them, and the test fails on its bounds instead of hanging.
            let healed = Flag()
            DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(8)) {
                healed.set()
                proxy.stop()
            }
            // A task started from outside the pool once the cancelled calls have been released
            // (after the grace period): it must run while the partition lasts.
            let (heartbeat, beat) = AsyncStream.makeStream(of: Bool.self)
            DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(3)) {
                Task.detached {
                    beat.yield(healed.isSet)
                    beat.finish()
                }
            }

            let clock = ContinuousClock()
            let start = clock.now
            for call in calls { call.cancel() }
            for call in calls {
                await #expect(throws: CancellationError.self) { _ = try await call.value }
            }
            let cancelled = clock.now - start
            await single.close()
            await pool.close()
            let shutDown = clock.now - start
            var beats = heartbeat.makeAsyncIterator()
            let heartbeatAfterHealing = await beats.next()

            #expect(cancelled < .seconds(5), "cancelling took \(cancelled)")
            #expect(shutDown < .seconds(5), "cancelling and closing took \(shutDown)")
            #expect(heartbeatAfterHealing == false, "the heartbeat task waited for the partition to heal")
            let healedByTheBound = healed.isSet
            #expect(!healedByTheBound)
        }
    }

    /// The listener's thread may be stuck in `LISTEN` on a partitioned server until TCP gives up;
    /// stopping it must not wait for that.
    @Test("stopping a listener stuck in LISTEN during a partition takes seconds")
    func listenerStops() async throws {
        try await withTestDatabase { database in
            let proxy = try TCPProxy(upstreamPort: TCPProxy.serverPort, mode: .stallAtFirstQuery)
            defer { proxy.stop() }
            let listener = PQListener(
                conninfo: TCPProxy.conninfo(of: TestDatabase.serverURL, database: database.name, port: proxy.port),
                channels: ["test_channel"], logger: TestDatabase.logger)
            listener.start()
            try #require(await eventually { proxy.stalls == 1 })
            let clock = ContinuousClock()
            let start = clock.now
            #expect(await finishes(within: .seconds(10)) { await listener.stop() })
            let stopping = clock.now - start
            #expect(stopping < .seconds(5), "stopping took \(stopping)")
        }
    }
}
