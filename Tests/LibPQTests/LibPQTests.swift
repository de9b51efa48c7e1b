import Foundation
import LibPQ
import Logging
@testable import TestSupport
import Testing

@Suite("LibPQ over a real server", .timeLimit(.minutes(4)))
struct LibPQTests {
    @Test("values round-trip through parameters in text format")
    func roundTrip() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            let id = UUID()
            let date = Date(timeIntervalSince1970: 1_705_314_600.123456)
            let row = try #require(
                try await connection.query(
                    PQQuery(
                        "roundTrip",
                        """
                        SELECT $1::bigint AS i, $2::text AS s, $3::bool AS b, $4::float8 AS d, $5::timestamptz AS t, \
                        $6::uuid AS u, $7::jsonb AS j, $8::text AS n, $9::text[] AS a
                        """
                    ),
                    [
                        Int64.max, "quote ' and \"double\" and \\ and 日本語", true, 2.5, date, id,
                        PQJSON(#"{"k": [1, "x"]}"#), String?.none, PQArray(["a,b", "c\"d", "e\\f"]),
                    ]
                ).first)
            #expect(try row.decode("i", as: Int64.self) == .max)
            #expect(try row.decode("s", as: String.self) == "quote ' and \"double\" and \\ and 日本語")
            #expect(try row.decode("b", as: Bool.self))
            #expect(try row.decode("d", as: Double.self) == 2.5)
            #expect(abs(try row.decode("t", as: Date.self).timeIntervalSince(date)) < 0.000_002)
            #expect(try row.decode("u", as: UUID.self) == id)
            #expect(try row.decode("j", as: PQJSON.self).text == #"{"k": [1, "x"]}"#)
            #expect(try row.decodeIfPresent("n", as: String.self) == nil)
            #expect(try row.decode("a", as: String.self) == #"{"a,b","c\"d","e\\f"}"#)
            await connection.close()
        }
    }

    @Test("server errors carry SQLSTATE, message and the statement's name, but never the row values of DETAIL")
    func serverErrors() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            try await connection.execute(
                script: "CREATE TABLE t (id int PRIMARY KEY, secret text CHECK (secret <> 'payload-7f3a'))",
                name: "create")
            try await connection.query(PQQuery("insertT", "INSERT INTO t VALUES ($1, $2)"), [13579, "x"])
            do {
                try await connection.query(PQQuery("insertT", "INSERT INTO t VALUES ($1, $2)"), [13579, "x"])
                Issue.record("a duplicate key must fail")
            } catch let error as PQError {
                #expect(error.sqlState == "23505")
                #expect(error.isUniqueViolation)
                #expect(error.statement == "insertT")
                #expect("\(error)".contains("insertT"))
                // The server's DETAIL says "Key (id)=(13579) already exists": a row value.
                #expect(error.detail == nil)
                #expect(!"\(error)".contains("13579"), "\(error)")
            }
            do {
                try await connection.query(
                    PQQuery("insertT", "INSERT INTO t VALUES ($1, $2)"), [2, "payload-7f3a"])
                Issue.record("a check violation must fail")
            } catch let error as PQError {
                // DETAIL would be "Failing row contains (2, payload-7f3a)".
                #expect(error.sqlState == "23514")
                #expect(!"\(error)".contains("payload-7f3a"), "\(error)")
            }
            // A decoding error names the column, not the value.
            await #expect(throws: PQError.self) {
                try await connection.query(PQQuery("", "SELECT 'secret-value' AS x")).first?.decode(
                    "x", as: Int.self)
            }
            await connection.close()
        }
    }

    @Test("a transaction commits on return and rolls back on throw")
    func transactions() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            try await connection.execute(script: "CREATE TABLE t (id int)", name: "create")
            try await connection.transaction { try await $0.query(PQQuery("", "INSERT INTO t VALUES (1)")) }
            await #expect(throws: TestFailure.self) {
                try await connection.transaction { connection in
                    try await connection.query(PQQuery("", "INSERT INTO t VALUES (2)"))
                    throw TestFailure(message: "abort")
                }
            }
            #expect(try await database.count("SELECT count(*) FROM t") == 1)
            await connection.close()
        }
    }

    @Test("a transaction inside a transaction is a savepoint: it commits with the outer one, undoes only itself")
    func nestedTransactions() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            try await connection.execute(script: "CREATE TABLE t (id int PRIMARY KEY)", name: "create")
            await #expect(throws: TestFailure.self) {
                try await connection.transaction { outer in
                    try await outer.query(PQQuery("", "INSERT INTO t VALUES (1)"))
                    try await outer.transaction { try await $0.query(PQQuery("", "INSERT INTO t VALUES (2)")) }
                    // An inner COMMIT would have made 1 and 2 permanent here.
                    throw TestFailure(message: "abort the outer one")
                }
            }
            #expect(try await database.count("SELECT count(*) FROM t") == 0)

            try await connection.transaction { outer in
                try await outer.query(PQQuery("", "INSERT INTO t VALUES (1)"))
                // A failed statement inside aborts only the savepoint; the outer transaction goes on.
                await #expect(throws: PQError.self) {
                    try await outer.transaction { try await $0.query(PQQuery("", "INSERT INTO t VALUES (1)")) }
                }
                try await outer.query(PQQuery("", "INSERT INTO t VALUES (3)"))
            }
            #expect(try await database.count("SELECT count(*) FROM t") == 2)
            await connection.close()
        }
    }

    @Test("a failed connection names host and port but never the password")
    func connectionFailure() async throws {
        do {
            _ = try await PQConnection.connect(
                "postgresql://someone:hunter2-secret@127.0.0.1:1/db?connect_timeout=2", logger: TestDatabase.logger)
            Issue.record("connecting to port 1 must fail")
        } catch let error as PQError {
            #expect(error.code == .connectionFailed)
            #expect("\(error)".contains("127.0.0.1:1"))
            #expect(!"\(error)".contains("hunter2"))
        }
    }

    @Test("the listener delivers notifications, and reconnects after its backend is terminated")
    func listenerReconnects() async throws {
        try await withTestDatabase { database in
            let listener = PQListener(
                conninfo: database.conninfo, channels: ["test_channel"], applicationName: "test-listen",
                logger: TestDatabase.logger)
            listener.start()
            var events = listener.events.makeAsyncIterator()
            #expect(await events.next() == .connected(reconnected: false))
            try await database.query("SELECT pg_notify('test_channel', 'one')")
            #expect(await events.next() == .notification(channel: "test_channel", payload: "one"))

            try await database.query(
                """
                SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = \
                'test-listen' AND datname = current_database()
                """
            )
            var sawDisconnect = false
            var reconnected = false
            while let event = await events.next() {
                if case .disconnected = event { sawDisconnect = true }
                if event == .connected(reconnected: true) {
                    reconnected = true
                    break
                }
            }
            #expect(sawDisconnect && reconnected)
            try await database.query("SELECT pg_notify('test_channel', 'two')")
            #expect(await events.next() == .notification(channel: "test_channel", payload: "two"))
            await listener.stop()
        }
    }
}
