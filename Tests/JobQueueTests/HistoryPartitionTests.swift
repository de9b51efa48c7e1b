import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// The partitioned history (`job_attempts`, by `finished_at`) and its upkeep: partitions created
/// ahead, dropped past retention (DETACH CONCURRENTLY as the owner, a plain DETACH through the
/// owner's functions otherwise), and what a replica killed mid-upkeep leaves mended by the next.
@Suite("History partitions and their upkeep", .timeLimit(.minutes(4)))
struct HistoryPartitionTests {
    static let day = Duration.seconds(86_400)

    /// Drops every partition, then creates days from 40 days ago to 37 days ago, as if the
    /// replicas had been stopped for five weeks: the next upkeep has old days to drop and the
    /// days up to now to create.
    func startFortyDaysAgo(_ database: TestDatabase) async throws {
        try await database.script(
            """
            SELECT count(*) FROM \(database.schema).drop_history_partitions('infinity');
            SELECT count(*) FROM \(database.schema).create_history_partitions(
                interval '1 day', interval '3 days', now() - interval '40 days');
            """)
    }

    func insertAttempt(_ database: TestDatabase, daysAgo: Int) async throws -> Int64 {
        try #require(
            try await database.scalar(
                """
                INSERT INTO \(database.schema).job_attempts
                    (job_id, kind, attempt, worker_id, started_at, finished_at, outcome)
                VALUES (1, 'k', 1, 'w', now(), now() - make_interval(days => $1), 'succeeded') RETURNING id
                """, [daysAgo], as: Int64.self))
    }

    @Test("a fresh queue has its history partitioned, days ahead, no DEFAULT partition")
    func freshQueue() async throws {
        try await withQueueDatabase { database in
            try await database.withConnection { connection in
                let partitions = try await HistoryPartitions(connection, schema: database.queue).list()
                #expect(partitions.allSatisfy { $0.table == "job_attempts" })
                #expect(partitions.first?.name == "job_attempts_legacy" && partitions.first?.from == nil)
                let last = try #require(partitions.last?.to)
                #expect(last > Date().addingTimeInterval(2 * 86_400))
                #expect(
                    try await HistoryPartitions(connection, schema: database.queue).fewestFuturePartitions() >= 2)
            }
            #expect(
                try await database.count(
                    """
                    SELECT count(*) FROM pg_partitioned_table
                    WHERE partrelid = '\(database.schema).job_attempts'::regclass AND partdefid <> 0
                    """) == 0)
            // The queue writes attempts through the parent as before.
            let id = try await insertAttempt(database, daysAgo: 0)
            #expect(
                try await database.count("SELECT count(*) FROM \(database.schema).job_attempts WHERE id = $1", [id])
                    == 1)
        }
    }

    @Test("upkeep creates the days up to three ahead and drops those past retention", arguments: [true, false])
    func createsAndDrops(concurrently: Bool) async throws {
        try await withQueueDatabase { database in
            try await startFortyDaysAgo(database)
            let old = try await insertAttempt(database, daysAgo: 39)
            try await database.withConnection { connection in
                let history = HistoryPartitions(connection, schema: database.queue)
                let upkeep = try await history.upkeep(
                    length: Self.day, ahead: Self.day * 3, retention: Self.day * 30, concurrently: concurrently)
                // 37 days ago up to three days ahead were created; 40 to 31 days ago dropped.
                #expect(upkeep.created.count >= 39)
                #expect(upkeep.dropped.count >= 9)
                #expect(upkeep.fewestFuturePartitions >= 2)
                let partitions = try await history.list()
                let first = try #require(partitions.first?.from)
                #expect(first >= Date().addingTimeInterval(-31 * 86_400))
                #expect(first <= Date().addingTimeInterval(-30 * 86_400))
                let last = try #require(partitions.last?.to)
                #expect(last >= Date().addingTimeInterval(3 * 86_400))
                // Contiguous: each day starts where the one before ends.
                #expect(zip(partitions, partitions.dropFirst()).allSatisfy { $0.to == $1.from })
                // Again: nothing to do.
                let again = try await history.upkeep(
                    length: Self.day, ahead: Self.day * 3, retention: Self.day * 30, concurrently: concurrently)
                #expect(again.created.isEmpty && again.dropped.isEmpty)
            }
            #expect(
                try await database.count("SELECT count(*) FROM \(database.schema).job_attempts WHERE id = $1", [old])
                    == 0)
            let kept = try await insertAttempt(database, daysAgo: 10)
            #expect(
                try await database.count("SELECT count(*) FROM \(database.schema).job_attempts WHERE id = $1", [kept])
                    == 1)
            #expect(try await database.count("SELECT count(*) FROM \(database.schema).history_detaching") == 0)
        }
    }

    @Test("a day a DBA detached to keep is kept by the upkeep")
    func byHand() async throws {
        try await withQueueDatabase { database in
            try await startFortyDaysAgo(database)
            let s = database.schema
            let partitions = try await database.withConnection {
                try await HistoryPartitions($0, schema: database.queue).list()
            }
            let kept = try #require(partitions.first?.name)
            try await database.script("ALTER TABLE \(s).job_attempts DETACH PARTITION \(s).\(kept)")
            try await database.withConnection { connection in
                _ = try await HistoryPartitions(connection, schema: database.queue).upkeep(
                    length: Self.day, ahead: Self.day * 3, retention: Self.day * 30)
            }
            #expect(try await database.count("SELECT count(*) FROM pg_class WHERE relname = $1", [kept]) == 1)
        }
    }

    @Test("a replica killed while detaching leaves a pending detach that the next upkeep finishes")
    func killedMidUpkeep() async throws {
        try await withQueueDatabase { database in
            try await startFortyDaysAgo(database)
            let s = database.schema
            // A reader whose transaction began before the detach: DETACH ... CONCURRENTLY commits
            // its first step, then waits for it.
            let reader = try await database.connect()
            try await reader.execute(script: "BEGIN; SELECT count(*) FROM \(s).job_attempts", name: "reader")
            let upkeepConnection = try await database.connect()
            let pidRow = try await upkeepConnection.query(PQQuery("pid", "SELECT pg_backend_pid() AS pid")).first
            let pid = try #require(pidRow).decode("pid", as: Int32.self)
            let upkeep = Task {
                try await HistoryPartitions(upkeepConnection, schema: database.queue).upkeep(
                    length: Self.day, ahead: Self.day * 3, retention: Self.day * 30, concurrently: true)
            }
            #expect(
                await eventually {
                    (try? await database.count(
                        """
                        SELECT count(*) FROM pg_stat_activity
                        WHERE pid = $1 AND wait_event_type = 'Lock' AND query LIKE '%DETACH PARTITION%CONCURRENTLY%'
                        """, [pid])) == 1
                })
            #expect(try await database.count("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", [pid]) == 1)
            _ = try await database.query("SELECT pg_terminate_backend($1)", [pid])
            await #expect(throws: (any Error).self) { try await upkeep.value }
            await upkeepConnection.close()
            try await reader.execute(script: "COMMIT", name: "reader")
            await reader.close()
            // Left behind: a detach pending, and its record.
            #expect(try await database.count("SELECT count(*) FROM \(s).history_partitions WHERE detach_pending") == 1)
            #expect(try await database.count("SELECT count(*) FROM \(s).history_detaching") == 1)

            let mended = try await database.withConnection { connection in
                try await HistoryPartitions(connection, schema: database.queue).upkeep(
                    length: Self.day, ahead: Self.day * 3, retention: Self.day * 30, concurrently: true)
            }
            #expect(mended.dropped.count >= 9)
            #expect(try await database.count("SELECT count(*) FROM \(s).history_partitions WHERE detach_pending") == 0)
            #expect(try await database.count("SELECT count(*) FROM \(s).history_detaching") == 0)
            #expect(
                try await database.count(
                    """
                    SELECT count(*) FROM \(s).history_partitions WHERE to_at <= now() - interval '30 days'
                    """) == 0)
            // Nothing named like a partition is left outside the table.
            #expect(
                try await database.count(
                    """
                    SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = $1 AND c.relname LIKE 'job\\_attempts\\_p%' AND c.relkind = 'r'
                      AND NOT c.relispartition
                    """, [s]) == 0)
        }
    }
}

/// The upkeep runs in every replica, beside the reaper, when it starts and then every interval.
@Suite("History upkeep in the worker", .timeLimit(.minutes(4)))
struct HistoryUpkeepServiceTests {
    @Test("a worker started after five weeks off creates the days up to now and drops those past retention")
    func workerKeepsTheHistory() async throws {
        try await withQueueDatabase { database in
            try await HistoryPartitionTests().startFortyDaysAgo(database)
            let worker = RunningWorker(database, handlers: [NoopHandler()]) {
                $0.history = HistoryUpkeepConfiguration(
                    partitionLength: .seconds(86_400), retention: .seconds(30 * 86_400), interval: .seconds(3_600))
            }
            let kept = await worker.worker.testSignals.historyKept.wait { !$0.created.isEmpty }
            try await worker.stop()
            let upkeep = try #require(kept)
            #expect(upkeep.dropped.count >= 9)
            #expect(upkeep.fewestFuturePartitions >= 2)
            #expect(upkeep.created.allSatisfy { $0.hasPrefix("\(database.schema).job_attempts_p") })
        }
    }
}

extension HistoryUpkeepServiceTests {
    @Test("the reaper and the lease renewer go on while a partition's detach waits for a reader")
    func upkeepWaitsAlone() async throws {
        try await withQueueDatabase { database in
            try await HistoryPartitionTests().startFortyDaysAgo(database)
            // A DBA's long read of the history: DETACH ... CONCURRENTLY waits for it to end.
            let reader = try await database.connect()
            try await reader.execute(
                script: "BEGIN; SELECT count(*) FROM \(database.schema).job_attempts", name: "reader")
            let worker = RunningWorker(database, handlers: [NoopHandler()]) {
                $0.history = HistoryUpkeepConfiguration(
                    partitionLength: .seconds(86_400), retention: .seconds(30 * 86_400), interval: .seconds(3_600))
                $0.reapInterval = .milliseconds(200)
                $0.lockTimeout = .seconds(120)
                $0.statementTimeout = .seconds(120)
            }
            let detachWaits = await eventually(timeout: .seconds(60)) {
                (try? await database.count(
                    """
                    SELECT count(*) FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock'
                      AND query LIKE '%DETACH PARTITION%CONCURRENTLY%'
                    """)) == 1
            }
            #expect(detachWaits)
            let reaped = worker.worker.testSignals.reaped.values.count
            let maintained = await eventually(timeout: .seconds(60)) {
                worker.worker.testSignals.reaped.values.count >= reaped + 3
            }
            #expect(maintained, "the reaper ran \(worker.worker.testSignals.reaped.values.count - reaped) times")
            #expect(worker.worker.testSignals.historyKept.values.isEmpty, "the detach was still waiting")
            try await reader.execute(script: "COMMIT", name: "reader")
            await reader.close()
            let kept = await worker.worker.testSignals.historyKept.wait { _ in true }
            try await worker.stop()
            #expect((kept?.dropped.count ?? 0) >= 9)
        }
    }
}

/// The hot tables the claim walks keep the settings that keep them small and vacuumed while
/// the history grows elsewhere (docs/database.md, "Server settings for a queue").
@Suite("Hot queue tables' storage settings")
struct HotTableSettingsTests {
    @Test("jobs and the concurrency keys' tables keep their fillfactor and autovacuum thresholds")
    func settings() async throws {
        try await withQueueDatabase { database in
            let options = try await database.query(
                """
                SELECT c.relname, array_to_string(c.reloptions, ',') AS options
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = $1 AND c.relname IN ('jobs', 'concurrency_keys', 'concurrency_key_wakeups')
                ORDER BY 1
                """, [database.schema]
            ).rows.map { (try $0.decode("relname", as: String.self), try $0.decode("options", as: String.self)) }
            #expect(options.map(\.0) == ["concurrency_key_wakeups", "concurrency_keys", "jobs"])
            for (table, option) in options {
                #expect(option.contains("autovacuum_vacuum_scale_factor=0.0"), "\(table): \(option)")
                #expect(option.contains("autovacuum_vacuum_threshold=1000"), "\(table): \(option)")
                #expect(option.contains("autovacuum_vacuum_cost_delay=0"), "\(table): \(option)")
            }
            #expect(options.last?.1.contains("fillfactor=80") == true)
        }
    }
}
