import Foundation
import Synchronization
import JobQueue
import LibPQ
import Logging
import Testing
import WebhookWorkerSchema

/// A fresh database per test on the server `DATABASE_URL` names (`make test` starts one), so
/// tests run in parallel without seeing each other's jobs. Dropped by ``drop()``.
struct TestDatabase: Sendable {
    let name: String
    let conninfo: String
    let admin: String
    /// The queue in it: the worker's (`webhook_worker`), or a schema of JobQueue's own.
    let queue: JobQueueSchema
    /// The queue's schema name, for statements written in tests.
    var schema: String { queue.name }

    init(name: String, conninfo: String, admin: String, queue: JobQueueSchema = WebhookWorkerSchema.queue) {
        self.name = name
        self.conninfo = conninfo
        self.admin = admin
        self.queue = queue
    }

    static var serverURL: String {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
            fatalError("DATABASE_URL is not set: run the tests with `make test`, which starts PostgreSQL")
        }
        return url
    }

    static let logger: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel =
            ProcessInfo.processInfo.environment["TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
        return logger
    }()

    /// Creates a migrated database: the worker's whole schema, or with `queue` that queue's
    /// migrations alone, or with `migrations` those alone (of the worker's schema, or of `queue`: a
    /// database of an earlier release). `appTables` also loads `sql/dev/` (the web app's tables).
    static func create(
        appTables: Bool = false, server: String = serverURL, queue: JobQueueSchema? = nil,
        migrations: [Migration]? = nil
    ) async throws -> TestDatabase {
        let name = "t_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""))"
        let admin = try await PQConnection.connect(server, logger: logger)
        try await admin.execute(script: "CREATE DATABASE \(name)", name: "createDatabase")
        await admin.close()
        let database = TestDatabase(
            name: name, conninfo: withDatabase(server, name), admin: server, queue: queue ?? WebhookWorkerSchema.queue)
        let connection = try await database.connect()
        if let queue, let migrations {
            try await Migrator(schema: queue.name, migrations: migrations).migrate(connection, logger: logger)
        } else if let queue {
            try await queue.migrate(connection, logger: logger)
        } else if let migrations {
            try await Migrator(schema: WebhookWorkerSchema.name, migrations: migrations).migrate(
                connection, logger: logger)
        } else {
            try await WebhookWorkerSchema.migrator.migrate(connection, logger: logger)
        }
        if appTables {
            for file in try FileManager.default.contentsOfDirectory(atPath: repoRoot + "/sql/dev").sorted()
            where file.hasSuffix(".sql") {
                let sql = try String(contentsOfFile: repoRoot + "/sql/dev/" + file, encoding: .utf8)
                try await connection.execute(script: sql, name: file)
            }
        }
        await connection.close()
        return database
    }

    func connect() async throws -> PQConnection {
        try await PQConnection.connect(conninfo, logger: Self.logger)
    }

    func pool(size: Int = 4) -> PQConnectionPool {
        PQConnectionPool(configuration: .init(conninfo: conninfo, maxConnections: size), logger: Self.logger)
    }

    /// Runs `body` on a connection of its own, closed however `body` ends.
    func withConnection<T>(_ body: (PQConnection) async throws -> T) async throws -> T {
        try await PQConnection.withConnection(conninfo, logger: Self.logger, body)
    }

    /// Runs one statement on a short-lived connection.
    @discardableResult
    func query(_ sql: String, _ bindings: [any PQEncodable] = []) async throws -> PQResult {
        try await withConnection { try await $0.query(PQQuery("", sql), bindings) }
    }

    /// Runs several statements without parameters.
    func script(_ sql: String) async throws {
        try await withConnection { try await $0.execute(script: sql, name: "script") }
    }

    func scalar<T: PQDecodable>(
        _ sql: String, _ bindings: [any PQEncodable] = [], as: T.Type = T.self
    )
        async throws -> T?
    {
        let result = try await query(sql, bindings)
        guard let row = result.first, let column = result.columns.first else { return nil }
        return try row.decodeIfPresent(column, as: T.self)
    }

    func count(_ sql: String, _ bindings: [any PQEncodable] = []) async throws -> Int {
        try await scalar(sql, bindings, as: Int.self) ?? 0
    }

    func drop() async {
        guard let admin = try? await PQConnection.connect(admin, logger: Self.logger) else { return }
        try? await admin.execute(script: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)", name: "dropDatabase")
        await admin.close()
    }

    /// The conninfo of `server` with its database replaced.
    static func withDatabase(_ server: String, _ database: String) -> String {
        if server.hasPrefix("postgres://") || server.hasPrefix("postgresql://"),
            var components = URLComponents(string: server)
        {
            components.path = "/" + database
            return components.string!
        }
        return server + " dbname=\(database)"
    }

    static let repoRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
                return url.path
            }
        }
        fatalError("no Package.swift above \(#filePath)")
    }()
}

/// Runs `body` with a fresh database and drops it afterwards, whatever happens.
func withTestDatabase<T>(
    appTables: Bool = false, queue: JobQueueSchema? = nil, migrations: [Migration]? = nil,
    _ body: (TestDatabase) async throws -> T
) async throws -> T {
    let database = try await TestDatabase.create(appTables: appTables, queue: queue, migrations: migrations)
    return try await withTeardown {
        try await body(database)
    } teardown: {
        await database.drop()
    }
}

/// A queue of JobQueue's own, not the worker's: schema `queue_test_<random>`, channel
/// `queue_test_<random>_wake`, metrics `queue_test_*`.
func testQueue() throws -> JobQueueSchema {
    let name = "queue_test_\(String(UInt32.random(in: 0 ... .max), radix: 16))"
    return try JobQueueSchema(name: name, channel: name + "_wake", metricPrefix: "queue_test")
}

/// Runs `body` with a fresh database holding only a queue of JobQueue's own (``testQueue()``).
func withQueueDatabase<T>(_ body: (TestDatabase) async throws -> T) async throws -> T {
    try await withTestDatabase(queue: try testQueue(), body)
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held. The default is
/// generous: on a loaded 2-core runner a burst of a hundred jobs has taken over 20 s, and a
/// condition that holds returns at once anyway.
func eventually(
    timeout: Duration = .seconds(45), every interval: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}

/// A worker running in the background of a test, stopped (gracefully) by ``stop()``.
final class RunningWorker: Sendable {
    let worker: JobWorker
    let task: Task<Void, any Error>
    let pool: PQConnectionPool

    /// - Parameter conninfo: where the worker and its handlers connect; the test database unless
    ///   given (a ``TCPProxy`` in front of it).
    init(
        _ database: TestDatabase, handlers: [any JobHandler], conninfo: String? = nil,
        configure: (inout JobWorkerConfiguration) -> Void = { _ in }
    ) {
        var configuration = JobWorkerConfiguration(
            conninfo: conninfo ?? database.conninfo, schema: database.queue,
            workerID: "test-\(UUID().uuidString.prefix(8))",
            pollInterval: .seconds(1), shutdownTimeout: .seconds(5))
        configure(&configuration)
        // The handlers' pool runs under the worker's timeouts, as `run` sets it up.
        pool = PQConnectionPool(
            configuration: configuration.databasePool(maxConnections: 4), logger: TestDatabase.logger)
        worker = JobWorker(
            configuration: configuration, handlers: handlers, database: pool, logger: TestDatabase.logger)
        // Its maintenance services and finisher report each run, for the tests to wait on.
        worker.testSignals.enable()
        let worker = self.worker
        task = Task { try await worker.run() }
    }

    func stop() async throws {
        worker.shutdown()
        try await task.value
        await pool.close()
    }
}

/// Runs `replicas` workers with `handlers` until the queue is empty (or `timeout` passes), then
/// stops them: true when it emptied.
func drainWithWorkers(
    _ database: TestDatabase, replicas: Int, handlers: [any JobHandler], timeout: Duration = .seconds(60),
    configure: (inout JobWorkerConfiguration) -> Void
) async throws -> Bool {
    var workers: [RunningWorker] = []
    for _ in 0..<replicas { workers.append(RunningWorker(database, handlers: handlers, configure: configure)) }
    let drained = try await eventually(timeout: timeout) {
        try await database.count("SELECT count(*) FROM \(database.schema).jobs") == 0
    }
    for worker in workers { try await worker.stop() }
    return drained
}

/// True when `body` ends within `limit`. The body runs in a task of its own that is not awaited
/// after the limit, so code that never returns fails the test instead of hanging it.
func finishes(within limit: Duration, _ body: @escaping @Sendable () async throws -> Void) async -> Bool {
    let done = Atomic<Bool>(false)
    let task = Task {
        try? await body()
        done.store(true, ordering: .sequentiallyConsistent)
    }
    let finished = await eventually(timeout: limit, every: .milliseconds(20)) {
        done.load(ordering: .sequentiallyConsistent)
    }
    if !finished { task.cancel() }
    return finished
}
