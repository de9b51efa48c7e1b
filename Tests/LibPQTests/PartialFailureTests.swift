import Foundation
import LibPQ
import Logging
@testable import TestSupport
import Testing

/// LibPQ when the connection half-breaks: a backend that dies before the first statement, a
/// statement blocked in libpq, a connection returned inside a transaction.
@Suite("LibPQ under partial failure", .timeLimit(.minutes(4)))
struct LibPQPartialFailureTests {
    @Test("a backend that dies between connect and the first statement is an error, not a crash")
    func dropBeforeFirstStatement() async throws {
        try await withTestDatabase { database in
            let proxy = try TCPProxy(upstreamPort: TCPProxy.serverPort, mode: .dropAtFirstQuery)
            defer { proxy.stop() }
            let conninfo = TCPProxy.conninfo(of: TestDatabase.serverURL, database: database.name, port: proxy.port)
            for _ in 0..<20 {
                do {
                    _ = try await PQConnection.connect(conninfo, logger: TestDatabase.logger)
                    Issue.record("the connection should have failed")
                } catch let error as PQError {
                    #expect(error.isTransient, "\(error)")
                }
            }
            let pool = PQConnectionPool(configuration: .init(conninfo: conninfo), logger: TestDatabase.logger)
            await #expect(throws: PQError.self) { try await pool.query(PQQuery("", "SELECT 1")) }
            await pool.close()
            // The same proxy forwarding again: connections work.
            proxy.setMode(.forward)
            let connection = try await PQConnection.connect(conninfo, logger: TestDatabase.logger)
            #expect(
                try await connection.query(PQQuery("", "SELECT 1 AS one")).first?.decode("one", as: Int.self) == 1
            )
            await connection.close()
        }
    }

    @Test("a statement blocked in libpq is cancelled with its task, and the connection stays usable")
    func cancelledStatement() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            let clock = ContinuousClock()
            let started = clock.now
            let returned = await finishes(within: .seconds(10)) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await connection.query(PQQuery("sleep", "SELECT pg_sleep(30)")) }
                    group.addTask { try await Task.sleep(for: .milliseconds(300)) }
                    _ = try await group.next()
                    group.cancelAll()
                    _ = try? await group.next()
                }
            }
            #expect(returned, "a 300 ms deadline around a 30 s statement must hold")
            #expect(clock.now - started < .seconds(5))
            #expect(connection.isReusable)
            #expect(
                try await connection.query(PQQuery("", "SELECT 2 AS two")).first?.decode("two", as: Int.self) == 2
            )
            await connection.close()
        }
    }

    @Test("the pool never lends out a connection left inside a transaction")
    func poolDiscardsOpenTransaction() async throws {
        try await withTestDatabase { database in
            try await database.script("CREATE TABLE t (n int)")
            let pool = PQConnectionPool(
                configuration: .init(conninfo: database.conninfo, maxConnections: 1), logger: TestDatabase.logger)
            try await pool.withConnection { connection in
                try await connection.execute(script: "BEGIN; INSERT INTO t VALUES (1)", name: "leftOpen")
            }
            try await pool.query(PQQuery("", "INSERT INTO t VALUES (2)"))
            await pool.close()
            // Had the second insert run inside the first transaction, neither row would be visible.
            #expect(try await database.count("SELECT count(*) FROM t WHERE n = 2") == 1)
            #expect(try await database.count("SELECT count(*) FROM t WHERE n = 1") == 0)
        }
    }
}
