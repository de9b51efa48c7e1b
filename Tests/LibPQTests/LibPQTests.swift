import Foundation
import JobQueue
import LibPQ
import Logging
import Testing
import WebhookDelivery
@testable import webhook_worker
import WebhookWorkerSchema

@Suite("LibPQ over a real server", .timeLimit(.minutes(2)))
struct LibPQTests {
    @Test("values round-trip through parameters in text format")
    func roundTrip() async throws {
        try await withTestDatabase { database in
            let connection = try await database.connect()
            let id = UUID()
            let date = Date(timeIntervalSince1970: 1_705_314_600.123456)
            let row = try #require(
                try await connection.query(
                    PostgresQuery(
                        "roundTrip",
                        """
                        SELECT $1::bigint AS i, $2::text AS s, $3::bool AS b, $4::float8 AS d, $5::timestamptz AS t, \
                        $6::uuid AS u, $7::jsonb AS j, $8::text AS n, $9::text[] AS a
                        """
                    ),
                    [
                        Int64.max, "quote ' and \"double\" and \\ and 日本語", true, 2.5, date, id,
                        PostgresJSON(#"{"k": [1, "x"]}"#), String?.none, PostgresArray(["a,b", "c\"d", "e\\f"]),
                    ]
                ).first)
            #expect(try row.decode("i", as: Int64.self) == .max)
            #expect(try row.decode("s", as: String.self) == "quote ' and \"double\" and \\ and 日本語")
            #expect(try row.decode("b", as: Bool.self))
            #expect(try row.decode("d", as: Double.self) == 2.5)
            #expect(abs(try row.decode("t", as: Date.self).timeIntervalSince(date)) < 0.000_002)
            #expect(try row.decode("u", as: UUID.self) == id)
            #expect(try row.decode("j", as: PostgresJSON.self).text == #"{"k": [1, "x"]}"#)
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
            try await connection.query(PostgresQuery("insertT", "INSERT INTO t VALUES ($1, $2)"), [13579, "x"])
            do {
                try await connection.query(PostgresQuery("insertT", "INSERT INTO t VALUES ($1, $2)"), [13579, "x"])
                Issue.record("a duplicate key must fail")
            } catch let error as PostgresError {
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
                    PostgresQuery("insertT", "INSERT INTO t VALUES ($1, $2)"), [2, "payload-7f3a"])
                Issue.record("a check violation must fail")
            } catch let error as PostgresError {
                // DETAIL would be "Failing row contains (2, payload-7f3a)".
                #expect(error.sqlState == "23514")
                #expect(!"\(error)".contains("payload-7f3a"), "\(error)")
            }
            // A decoding error names the column, not the value.
            await #expect(throws: PostgresError.self) {
                try await connection.query(PostgresQuery("", "SELECT 'secret-value' AS x")).first?.decode(
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
            try await connection.transaction { try await $0.query(PostgresQuery("", "INSERT INTO t VALUES (1)")) }
            await #expect(throws: TestFailure.self) {
                try await connection.transaction { connection in
                    try await connection.query(PostgresQuery("", "INSERT INTO t VALUES (2)"))
                    throw TestFailure(message: "abort")
                }
            }
            #expect(try await database.count("SELECT count(*) FROM t") == 1)
            await connection.close()
        }
    }

    @Test("a failed connection names host and port but never the password")
    func connectionFailure() async throws {
        do {
            _ = try await PostgresConnection.connect(
                "postgresql://someone:hunter2-secret@127.0.0.1:1/db?connect_timeout=2", logger: TestDatabase.logger)
            Issue.record("connecting to port 1 must fail")
        } catch let error as PostgresError {
            #expect(error.code == .connectionFailed)
            #expect("\(error)".contains("127.0.0.1:1"))
            #expect(!"\(error)".contains("hunter2"))
        }
    }

    @Test("the listener delivers notifications, and reconnects after its backend is terminated")
    func listenerReconnects() async throws {
        try await withTestDatabase { database in
            let listener = PostgresListener(
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

    @Test("the embedded migrations are exactly the files of sql/job_queue/ and sql/webhook_delivery/")
    func embeddedMigrationsMatchFiles() throws {
        func files(_ folder: String) throws -> [(name: String, text: String)] {
            let directory = TestDatabase.repoRoot + "/sql/" + folder
            return try FileManager.default.contentsOfDirectory(atPath: directory)
                .filter { $0.hasSuffix(".sql") && $0.first?.isNumber == true }.sorted()
                .map { (String($0.dropLast(4)), try String(contentsOfFile: directory + "/" + $0, encoding: .utf8)) }
        }
        // The queue's are templates: rendered with placeholders that stand for themselves.
        let templates = try JobQueueSchema(name: "x_schema_x", channel: "x_channel_x").migrations.map { migration in
            migration.sql.replacingOccurrences(of: "x_schema_x", with: "{{schema}}")
                .replacingOccurrences(of: "x_channel_x", with: "{{channel}}")
        }
        let queueFiles = try files("job_queue")
        #expect(queueFiles.map(\.name) == JobQueueSchema.default.migrations.map(\.name))
        for (file, template) in zip(queueFiles, templates) {
            #expect(file.text == template + "\n", "run `make` to regenerate sql/job_queue/\(file.name).sql")
        }
        let deliveryFiles = try files("webhook_delivery")
        #expect(deliveryFiles.map(\.name) == WebhookDeliverySchema.migrations.map(\.name))
        for (file, migration) in zip(deliveryFiles, WebhookDeliverySchema.migrations) {
            #expect(file.text == migration.sql + "\n", "run `make` to regenerate sql/webhook_delivery/\(file.name).sql")
        }
    }

    @Test("concurrent migrate from several connections is safe; twice changes nothing")
    func concurrentMigrations() async throws {
        let admin = try await PostgresConnection.connect(TestDatabase.serverURL, logger: TestDatabase.logger)
        let name = "t_migrate_\(UInt32.random(in: 0 ... .max))"
        try await admin.execute(script: "CREATE DATABASE \(name)", name: "create")
        let conninfo = TestDatabase.withDatabase(TestDatabase.serverURL, name)
        let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
            for _ in 0..<6 {
                group.addTask {
                    let connection = try await PostgresConnection.connect(conninfo, logger: TestDatabase.logger)
                    let applied = try await WebhookWorkerSchema.migrator.migrate(
                        connection, logger: TestDatabase.logger)
                    await connection.close()
                    return applied
                }
            }
            return try await group.reduce(into: [[Int]]()) { $0.append($1) }
        }
        #expect(applied.flatMap { $0 }.sorted() == WebhookWorkerSchema.migrations.map(\.version))
        let connection = try await PostgresConnection.connect(conninfo, logger: TestDatabase.logger)
        #expect(try await WebhookWorkerSchema.migrator.migrate(connection, logger: TestDatabase.logger).isEmpty)
        let count = try await connection.query(
            PostgresQuery("", "SELECT count(*) AS n FROM webhook_worker.schema_migrations"))
        #expect(try count.first?.decode("n", as: Int.self) == WebhookWorkerSchema.migrations.count)
        await connection.close()
        try await admin.execute(script: "DROP DATABASE \(name) WITH (FORCE)", name: "drop")
        await admin.close()
    }
}

@Suite("Settings and schedules", .timeLimit(.minutes(2)))
struct SettingsTests {
    @Test("durations parse in every unit and reject junk")
    func durations() {
        #expect(DurationText.parse("250ms") == .milliseconds(250))
        #expect(DurationText.parse("5s") == .seconds(5))
        #expect(DurationText.parse("5m") == .seconds(300))
        #expect(DurationText.parse("2h") == .seconds(7200))
        #expect(DurationText.parse("1d") == .seconds(86_400))
        #expect(DurationText.parse("1.5s") == .milliseconds(1500))
        for junk in ["", "5", "s", "-5s", "5x", "5 s s", "1e3s", "ms", "∞s"] {
            #expect(DurationText.parse(junk) == nil, "\(junk) must not parse")
        }
        #expect(DurationText.format(.seconds(300)) == "5m")
        #expect(DurationText.format(.milliseconds(1500)) == "1500ms")
    }

    @Test("the default schedule gives 8 attempts and jitter stays within ±20 %")
    func scheduleStrategy() throws {
        let strategy = try #require(DurationText.schedule("5s,5m,30m,2h,5h,10h,10h"))
        #expect(strategy == .standard)
        #expect(strategy.maxAttempts == 8)
        #expect(strategy.longestDelay == .seconds(36_000))
        #expect(strategy.description == "5s,5m,30m,2h,5h,10h,10h")
        for attempt in 1...7 {
            let base = strategy.schedule[attempt - 1].totalSeconds
            for _ in 0..<200 {
                let delay = strategy.delay(afterAttempt: attempt).totalSeconds
                #expect(delay >= base * 0.8 - 0.001 && delay <= base * 1.2 + 0.001)
            }
        }
        #expect(strategy.clamp(.seconds(999_999)) == .seconds(36_000))
        #expect(strategy.clamp(.seconds(-5)) == .zero)
        #expect(DurationText.schedule("5s,,5m") == nil)
        #expect(DurationText.schedule("soon") == nil)
    }

    @Test("exponential jitter doubles up to its cap; none gives one attempt")
    func otherStrategies() {
        let exponential: any RetryStrategy = .exponentialJitter(
            maxAttempts: 10, initialDelay: .seconds(1), maxDelay: .seconds(60), jitter: 0)
        #expect(
            (1...9).map { exponential.delay(afterAttempt: $0) }
                == [1, 2, 4, 8, 16, 32, 60, 60, 60].map(Duration.seconds))
        #expect(exponential.delay(afterAttempt: 500) == .seconds(60))
        #expect(exponential.maxAttempts == 10 && exponential.clamp(.seconds(3600)) == .seconds(60))
        let jittered = ExponentialJitterRetryStrategy(
            maxAttempts: 3, initialDelay: .seconds(10), maxDelay: .seconds(100))
        for _ in 0..<200 {
            let delay = jittered.delay(afterAttempt: 2).totalSeconds
            #expect(delay >= 16 - 0.001 && delay <= 24 + 0.001)
        }
        let none: any RetryStrategy = .none
        #expect(none.maxAttempts == 1 && none.clamp(.seconds(5)) == .zero)
    }
}
