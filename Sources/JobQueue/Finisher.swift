import Foundation
import LibPQ
import Logging
import Synchronization

/// Writes the outcomes of attempts, many per transaction.
///
/// At high rates the commit, not the claim, is the cost, so outcomes wait here while a write is
/// in flight and go together in the next one. A handler's task awaits its outcome being durable
/// before its slot frees, so shutdown never leaves an outcome unwritten. The write runs on the
/// finisher's own task: cancelling a handler cannot abort it.
final class Finisher: Sendable {
    struct Entry: Sendable {
        let job: Job
        let resolution: Resolution
        let statements: [BoundStatement]
        let finishedAt: Date
    }

    private struct Pending {
        var entries: [(Entry, CheckedContinuation<Bool, Never>)] = []
        var stopping = false
    }

    private let store: JobStore
    private let database: PostgresConnectionPool
    private let logger: Logger
    private let maxBatch: Int
    private let pending = Mutex(Pending())
    /// One per writer: a submission wakes them all, and an idle one takes it.
    private let doorbells: [Doorbell]

    /// - Parameter writers: batches written at once, each on its own connection of `database`.
    init(store: JobStore, database: PostgresConnectionPool, maxBatch: Int, writers: Int, logger: Logger) {
        self.store = store
        self.database = database
        self.maxBatch = maxBatch
        self.doorbells = (0..<max(1, writers)).map { _ in Doorbell() }
        self.logger = logger
    }

    /// Queues an outcome and returns once it is written: true if this replica still held the job,
    /// false if the lease had been lost (the write changed nothing).
    func submit(_ entry: Entry) async -> Bool {
        await withCheckedContinuation { continuation in
            pending.withLock { $0.entries.append((entry, continuation)) }
            for doorbell in doorbells { doorbell.ring() }
        }
    }

    /// Writes until `stop()` was called and nothing is pending.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            for doorbell in doorbells {
                group.addTask { await self.writeLoop(doorbell) }
            }
        }
    }

    private func writeLoop(_ doorbell: Doorbell) async {
        var backoff: Duration = .milliseconds(100)
        while true {
            let (batch, stopping) = pending.withLock { state in
                let count = min(state.entries.count, maxBatch)
                let batch = Array(state.entries.prefix(count))
                state.entries.removeFirst(count)
                return (batch, state.stopping)
            }
            if batch.isEmpty {
                if stopping { return }
                await doorbell.wait(timeout: .seconds(1))
                continue
            }
            let entries = batch.map(\.0)
            do {
                let applied = try await write(entries)
                backoff = .milliseconds(100)
                for (entry, continuation) in batch { continuation.resume(returning: applied.contains(entry.job.id)) }
            } catch let error as PostgresError where error.isTransient {
                logger.warning(
                    "could not record job outcomes, retrying", metadata: ["error": "\(error)", "jobs": "\(batch.count)"])
                pending.withLock { $0.entries.insert(contentsOf: batch, at: 0) }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            } catch {
                // Not the connection: one entry carries something the database refuses. Write
                // them one at a time so the rest are not held up by it.
                for (entry, continuation) in batch {
                    continuation.resume(returning: await writeAlone(entry))
                }
            }
        }
    }

    /// Ends `run()` once everything submitted so far is written.
    func stop() {
        pending.withLock { $0.stopping = true }
        for doorbell in doorbells { doorbell.ring() }
    }

    private func writeAlone(_ entry: Entry) async -> Bool {
        do {
            return try await write([entry]).contains(entry.job.id)
        } catch {
            logger.error(
                "could not record a job's outcome; its lease will expire and it will run again",
                metadata: ["job.id": "\(entry.job.id)", "job.kind": "\(entry.job.kind)", "error": "\(error)"])
            return false
        }
    }

    private func write(_ entries: [Entry]) async throws -> Set<Int64> {
        try await database.withConnection { connection in
            do {
                return try await writePipelined(entries, on: connection)
            } catch let error as PostgresError where !error.isTransient {
                // A statement was refused and the whole batch rolled back: write it again with a
                // savepoint per entry, so that only the entry at fault fails.
                logger.debug("batched outcome write failed; writing entry by entry", metadata: ["error": "\(error)"])
                return try await connection.transaction { connection in
                    var applied = Set<Int64>()
                    let plain = entries.filter { $0.statements.isEmpty }
                    applied.formUnion(try await apply(plain, on: connection))
                    for (index, entry) in entries.enumerated() where !entry.statements.isEmpty {
                        applied.formUnion(try await applyWithStatements(entry, savepoint: index, on: connection))
                    }
                    return applied
                }
            }
        }
    }

    /// The whole batch in one transaction and at most two round trips: the guarded state changes
    /// (one statement per kind of outcome), then the statements of the entries this replica
    /// still held, and the commit.
    private func writePipelined(_ entries: [Entry], on connection: PostgresConnection) async throws -> Set<Int64> {
        let guarded = guardedStatements(entries)
        let hasSideEffects = entries.contains { !$0.statements.isEmpty }
        let first = try await connection.pipeline(
            [PostgresStatement(Self.begin)] + guarded + (hasSideEffects ? [] : [PostgresStatement(Self.commit)]))
        var applied = Set<Int64>()
        do {
            for result in first {
                let rows = try result.get()
                for row in rows.rows where rows.columns.contains("job_id") { applied.insert(try row.decode("job_id")) }
            }
        } catch {
            try? await connection.execute(script: "ROLLBACK", name: "rollback")
            throw error
        }
        guard hasSideEffects else { return applied }
        let side = entries.filter { applied.contains($0.job.id) }.flatMap(\.statements)
        let second = try await connection.pipeline(side + [PostgresStatement(Self.commit)])
        if let failure = second.first(where: { if case .failure = $0 { true } else { false } }) {
            try? await connection.execute(script: "ROLLBACK", name: "rollback")
            _ = try failure.get()
        }
        return applied
    }

    static let begin = PostgresQuery("", "BEGIN")
    static let commit = PostgresQuery("", "COMMIT")

    /// One guarded state change plus the handler's statements, inside a savepoint: if the
    /// statements fail, the attempt is recorded as failed instead and the batch goes on.
    private func applyWithStatements(_ entry: Entry, savepoint: Int, on connection: PostgresConnection) async throws
        -> Set<Int64>
    {
        try await connection.execute(script: "SAVEPOINT outcome_\(savepoint)", name: "savepoint")
        do {
            let applied = try await apply([entry], on: connection)
            if applied.contains(entry.job.id) {
                for statement in entry.statements {
                    try await connection.query(statement.query, statement.bindings)
                }
            }
            try await connection.execute(script: "RELEASE SAVEPOINT outcome_\(savepoint)", name: "releaseSavepoint")
            return applied
        } catch let error as PostgresError where !error.isTransient {
            try await connection.execute(script: "ROLLBACK TO SAVEPOINT outcome_\(savepoint)", name: "rollbackSavepoint")
            logger.error(
                "a job handler's statements failed; recording the attempt as failed",
                metadata: ["job.id": "\(entry.job.id)", "job.kind": "\(entry.job.kind)", "error": "\(error)"])
            let message = "recording the outcome failed: \(error)"
            let failure = Entry(
                job: entry.job,
                resolution: entry.job.isLastAttempt
                    ? .deadLetter(reason: .attemptsExhausted, error: message)
                    : .retry(error: message, runAt: entry.finishedAt + 5),
                statements: [], finishedAt: entry.finishedAt)
            return try await apply([failure], on: connection)
        }
    }

    /// Guarded state changes for entries without statements: one statement per kind of outcome.
    private func apply(_ entries: [Entry], on connection: PostgresConnection) async throws -> Set<Int64> {
        var applied = Set<Int64>()
        for statement in guardedStatements(entries) {
            let result = try await connection.query(statement.query, statement.bindings)
            for row in result.rows { applied.insert(try row.decode("job_id")) }
        }
        return applied
    }

    /// The guarded state changes for `entries`: one statement per kind of outcome present, each
    /// returning the `job_id`s it changed.
    private func guardedStatements(_ entries: [Entry]) -> [PostgresStatement] {
        guard !entries.isEmpty else { return [] }
        var complete: [Entry] = [], cancel: [(Entry, String)] = [], retry: [(Entry, String, Date)] = []
        var dead: [(Entry, DeadLetterReason, String)] = [], release: [(Entry, String)] = []
        for entry in entries {
            switch entry.resolution {
            case .complete: complete.append(entry)
            case .cancel(let reason): cancel.append((entry, Self.clean(reason)))
            case .retry(let error, let runAt): retry.append((entry, Self.clean(error), runAt))
            case .deadLetter(let reason, let error): dead.append((entry, reason, Self.clean(error)))
            case .release(let reason): release.append((entry, Self.clean(reason)))
            }
        }
        var statements: [PostgresStatement] = []
        let worker = store.workerID
        if !complete.isEmpty {
            statements.append(
                PostgresStatement(
                    JobStore.complete,
                    [ids(complete), attempts(complete), worker, PostgresArray(complete.map(\.finishedAt))])
            )
        }
        if !cancel.isEmpty {
            let e = cancel.map(\.0)
            statements.append(
                PostgresStatement(
                    JobStore.cancel,
                    [ids(e), attempts(e), worker, PostgresArray(e.map(\.finishedAt)), PostgresArray(cancel.map(\.1))])
            )
        }
        if !retry.isEmpty {
            let e = retry.map(\.0)
            statements.append(
                PostgresStatement(
                    JobStore.retry,
                    [
                        ids(e), attempts(e), worker, PostgresArray(e.map(\.finishedAt)), PostgresArray(retry.map(\.1)),
                        PostgresArray(retry.map(\.2)),
                    ])
            )
        }
        if !dead.isEmpty {
            let e = dead.map(\.0)
            statements.append(
                PostgresStatement(
                    JobStore.deadLetter,
                    [
                        ids(e), attempts(e), worker, PostgresArray(e.map(\.finishedAt)), PostgresArray(dead.map(\.2)),
                        PostgresArray(dead.map(\.1.rawValue)), PostgresArray(e.map(\.job.maxAttempts)),
                    ])
            )
        }
        if !release.isEmpty {
            let e = release.map(\.0)
            statements.append(
                PostgresStatement(
                    JobStore.release,
                    [ids(e), attempts(e), worker, PostgresArray(e.map(\.finishedAt)), PostgresArray(release.map(\.1))])
            )
        }
        return statements
    }

    private func ids(_ entries: [Entry]) -> PostgresArray<Int64> { PostgresArray(entries.map(\.job.id)) }
    private func attempts(_ entries: [Entry]) -> PostgresArray<Int> { PostgresArray(entries.map(\.job.attempt)) }

    /// Error texts go into `text` columns: no NUL bytes (PostgreSQL refuses them), and capped.
    static func clean(_ text: String) -> String {
        var cleaned = text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}")
        if cleaned.count > 2000 { cleaned = String(cleaned.prefix(2000)) + "…" }
        return cleaned
    }
}
