import Foundation
import LibPQ
import Logging
import Synchronization

/// Writes the outcomes of attempts, many per transaction.
///
/// At high rates the commit, not the claim, is the cost, so outcomes wait here while a write is
/// in flight and go together in the next one. ``submit(_:)`` returns at once; `recorded` hears of
/// every entry once its write is done (applied, not held any more, or given up at shutdown).
///
/// With a ``OutcomeClaimer`` (the worker, when `claimsWithOutcomes` is on) the transaction
/// that writes a batch also claims the next jobs for the slots its attempts held: a keyed job's
/// next job can be claimed only once its outcome is committed, and claiming it in the same
/// transaction saves the claim's own round trip and commit, and the wait for them.
///
/// The worker runs ``run()`` in a task that cancelling the worker cannot reach, so a handler's
/// outcome is written even on a forced stop. What bounds it is ``stop(deadline:)``: writes still
/// failing at the deadline (a database that is down) are given up, and the leases of those jobs
/// return them to the queue later. Nothing is lost.
final class Finisher: Sendable {
    struct Entry: Sendable {
        let job: Job
        let resolution: Resolution
        let statements: [BoundStatement]
        /// When the handler returned; `finished_at` is the database's clock at the write, less the
        /// time since.
        let ended: ContinuousClock.Instant
        /// The wait before the next attempt if the handler's statements fail and this attempt is
        /// recorded as failed instead: the kind's retry strategy's wait after this attempt.
        var retryWait: Duration = .seconds(5)
    }

    /// Claims jobs in the transactions that write outcomes.
    protocol OutcomeClaimer: Sendable {
        /// How many jobs to claim with the outcomes of `entries` (0: none).
        func claimLimit(for entries: [Entry]) -> Int
        /// The claim of up to `limit` jobs.
        func claimStatement(limit: Int) -> PQStatement
        /// The transaction writing `entries` ended: `rows` are its claim's (nil when it made
        /// none or did not commit), and `connection` is still the writer's. Answers outcomes to
        /// write (jobs claimed that nothing will run: released).
        func claimed(_ rows: PQResult?, with entries: [Entry], on connection: PQConnection) async -> [Entry]
    }

    /// What became of an entry.
    enum Result: Sendable {
        /// Written: this replica still held the job.
        case applied
        /// Written, but the lease had been lost, so nothing changed.
        case notHeld
        /// Not written: the stop deadline passed while the database failed.
        case abandoned
    }

    private struct Pending {
        var entries: [Entry] = []
        var stopping = false
        /// Writes in flight.
        var writing = 0
    }

    /// While one write is in flight, outcomes gather for the next; another writer starts a
    /// second transaction only for a backlog at least this big. Each commit waits for the disk,
    /// so two half-empty commits cost nearly twice one full one.
    static let helpThreshold = 32

    let store: JobStore
    private let database: PQConnectionPool
    private let logger: Logger
    private let maxBatch: Int
    private let pending = Mutex(Pending())
    private let recorded: @Sendable ([(Entry, Result)]) -> Void
    private let claimer: (any OutcomeClaimer)?
    /// One per writer: a submission wakes them all, and an idle one takes it.
    private let wakeUps: [WakeUps<Void>]
    private let stopDeadline = WakeUps<ContinuousClock.Instant>()

    /// - Parameters:
    ///   - writers: batches written at once, each on its own connection of `database`.
    ///   - claimer: claims the next jobs in the transactions that write outcomes (nil: none do).
    ///   - recorded: called with each batch's entries once their fate is known.
    init(
        store: JobStore, database: PQConnectionPool, maxBatch: Int, writers: Int, logger: Logger,
        claimer: (any OutcomeClaimer)? = nil, recorded: @escaping @Sendable ([(Entry, Result)]) -> Void
    ) {
        self.claimer = claimer
        self.store = store
        self.database = database
        self.maxBatch = maxBatch
        self.wakeUps = (0..<max(1, writers)).map { _ in WakeUps<Void>() }
        self.logger = logger
        self.recorded = recorded
    }

    /// Queues an outcome to be written.
    func submit(_ entry: Entry) {
        pending.withLock { $0.entries.append(entry) }
        for wakeUp in wakeUps { wakeUp.ring() }
    }

    /// Ends ``run()`` once everything submitted is written, or at `deadline` with the rest given
    /// up. Submit nothing after this.
    func stop(deadline: ContinuousClock.Instant) {
        pending.withLock { $0.stopping = true }
        stopDeadline.ring(deadline)
        for wakeUp in wakeUps { wakeUp.finish() }
    }

    /// Writes until stopped.
    func run() async {
        await withTaskGroup(of: Bool.self) { group in
            for wakeUp in wakeUps {
                group.addTask {
                    await self.writeLoop(wakeUp)
                    return true
                }
            }
            group.addTask {
                var deadlines = self.stopDeadline.stream.makeAsyncIterator()
                if let deadline = await deadlines.next() { try? await Task.sleep(until: deadline) }
                return false
            }
            var writing = wakeUps.count
            while let writerEnded = await group.next() {
                if writerEnded {
                    writing -= 1
                    // Everything is written: end the deadline's watch too.
                    if writing == 0 { group.cancelAll() }
                } else if writing > 0 {
                    // The deadline passed: cancel the writers' statements and give up what is left.
                    logger.warning(
                        "shutdown deadline reached while recording job outcomes; leaving the rest to their leases")
                    group.cancelAll()
                }
            }
        }
    }

    private func writeLoop(_ wakeUp: WakeUps<Void>) async {
        var wakeUps = wakeUp.stream.makeAsyncIterator()
        var backoff: Duration = .milliseconds(100)
        var reported = false
        while true {
            if Task.isCancelled {
                giveUp()
                return
            }
            let (batch, stopping) = pending.withLock { state -> ([Entry], Bool) in
                guard state.writing == 0 || state.entries.count >= Self.helpThreshold || state.stopping else {
                    return ([], false)
                }
                let count = min(state.entries.count, maxBatch)
                let batch = Array(state.entries.prefix(count))
                state.entries.removeFirst(count)
                if !batch.isEmpty { state.writing += 1 }
                return (batch, state.stopping)
            }
            if batch.isEmpty {
                if stopping { return }
                _ = await wakeUps.next()
                continue
            }
            defer { pending.withLock { $0.writing -= 1 } }
            do {
                let applied = try await write(batch)
                if reported { logger.info("recording job outcomes again") }
                reported = false
                backoff = .milliseconds(100)
                recorded(batch.map { ($0, applied.contains($0.job.id) ? .applied : .notHeld) })
            } catch let error as PQError where error.isTransient {
                if !reported {
                    logger.warning(
                        "could not record job outcomes, retrying",
                        metadata: ["error": "\(error)", "jobs": "\(batch.count)"])
                }
                reported = true
                pending.withLock { $0.entries.insert(contentsOf: batch, at: 0) }
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            } catch is CancellationError {
                pending.withLock { $0.entries.insert(contentsOf: batch, at: 0) }
            } catch {
                // Not the connection: one entry carries something the database refuses. Write
                // them one at a time so the rest are not held up by it.
                var results: [(Entry, Result)] = []
                for entry in batch { results.append((entry, await writeAlone(entry) ? .applied : .notHeld)) }
                recorded(results)
            }
        }
    }

    /// At the deadline: whatever is still pending is not written.
    private func giveUp() {
        let left = pending.withLock { state in
            defer { state.entries = [] }
            return state.entries
        }
        if !left.isEmpty { recorded(left.map { ($0, .abandoned) }) }
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
            let limit = claimer?.claimLimit(for: entries) ?? 0
            do {
                let (applied, claim) = try await writePipelined(entries, claiming: limit, on: connection)
                if let claimer { released(await claimer.claimed(claim, with: entries, on: connection)) }
                return applied
            } catch let error as PQError where !error.isTransient {
                // The slots stay free for the claim loop; the entry-by-entry write claims nothing.
                if let claimer { released(await claimer.claimed(nil, with: entries, on: connection)) }
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
            } catch {
                if let claimer { released(await claimer.claimed(nil, with: entries, on: connection)) }
                throw error
            }
        }
    }

    /// Claimed jobs that nothing will run go back to the queue with the next batch.
    private func released(_ entries: [Entry]) {
        guard !entries.isEmpty else { return }
        pending.withLock { $0.entries.append(contentsOf: entries) }
        for wakeUp in wakeUps { wakeUp.ring() }
    }

    /// The whole batch in one transaction and at most two round trips: the guarded state changes
    /// (one statement per kind of outcome), then the statements of the entries this replica
    /// still held, the claim of up to `limit` next jobs (when `limit` > 0), and the commit.
    /// Answers the jobs changed and the claim's rows.
    private func writePipelined(
        _ entries: [Entry], claiming limit: Int, on connection: PQConnection
    ) async throws -> (applied: Set<Int64>, claim: PQResult?) {
        let guarded = guardedStatements(entries)
        let hasSideEffects = entries.contains { !$0.statements.isEmpty }
        let claim = limit > 0 ? claimer.map { [$0.claimStatement(limit: limit)] } ?? [] : []
        let end = claim + [PQStatement(Self.commit)]
        let first = try await connection.pipeline([PQStatement(Self.begin)] + guarded + (hasSideEffects ? [] : end))
        var applied = Set<Int64>()
        do {
            for result in first.dropFirst().prefix(guarded.count) {
                for row in try result.get().rows { applied.insert(try row.decode("job_id")) }
            }
            for result in first.dropFirst(1 + guarded.count) { _ = try result.get() }
        } catch {
            try? await connection.execute(script: "ROLLBACK", name: "rollback")
            throw error
        }
        guard hasSideEffects else { return (applied, claim.isEmpty ? nil : try first[1 + guarded.count].get()) }
        let side = BoundStatement.merged(entries.filter { applied.contains($0.job.id) }.flatMap(\.statements))
        let second: [Swift.Result<PQResult, PQError>]
        do {
            second = try await connection.pipeline(side + end)
        } catch {
            // The BEGIN of the first call is still open: end it (the pool would not take the
            // connection back in a transaction either).
            try? await connection.execute(script: "ROLLBACK", name: "rollback")
            throw error
        }
        if let failure = second.first(where: { if case .failure = $0 { true } else { false } }) {
            try? await connection.execute(script: "ROLLBACK", name: "rollback")
            _ = try failure.get()
        }
        return (applied, claim.isEmpty ? nil : try second[side.count].get())
    }

    static let begin = PQQuery("", "BEGIN")
    static let commit = PQQuery("", "COMMIT")

    /// One guarded state change plus the handler's statements, inside a savepoint: if the
    /// statements fail, the attempt is recorded as failed instead and the batch goes on.
    private func applyWithStatements(
        _ entry: Entry, savepoint: Int, on connection: PQConnection
    ) async throws
        -> Set<Int64>
    {
        try await connection.execute(script: "SAVEPOINT outcome_\(savepoint)", name: "savepoint")
        do {
            let applied = try await apply([entry], on: connection)
            if applied.contains(entry.job.id) {
                for statement in BoundStatement.merged(entry.statements) {
                    try await connection.query(statement.query, statement.bindings)
                }
            }
            try await connection.execute(script: "RELEASE SAVEPOINT outcome_\(savepoint)", name: "releaseSavepoint")
            return applied
        } catch let error as PQError where !error.isTransient {
            try await connection.execute(
                script: "ROLLBACK TO SAVEPOINT outcome_\(savepoint)", name: "rollbackSavepoint")
            logger.error(
                "a job handler's statements failed; recording the attempt as failed",
                metadata: ["job.id": "\(entry.job.id)", "job.kind": "\(entry.job.kind)", "error": "\(error)"])
            let message = "recording the outcome failed: \(error)"
            let failure = Entry(
                job: entry.job,
                resolution: entry.job.isLastAttempt
                    ? .deadLetter(reason: .attemptsExhausted, error: message)
                    : .retry(error: message, wait: entry.retryWait),
                statements: [], ended: entry.ended, retryWait: entry.retryWait)
            return try await apply([failure], on: connection)
        }
    }

    /// Guarded state changes for entries without statements: one statement per kind of outcome.
    private func apply(_ entries: [Entry], on connection: PQConnection) async throws -> Set<Int64> {
        var applied = Set<Int64>()
        for statement in guardedStatements(entries) {
            let result = try await connection.query(statement.query, statement.bindings)
            for row in result.rows { applied.insert(try row.decode("job_id")) }
        }
        return applied
    }
}
