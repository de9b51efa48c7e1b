import Foundation
import LibPQ

// The statements that record a batch of outcomes: one guarded state change per kind of outcome,
// each for every entry of that kind, returning the jobs this replica still held. Finisher.swift
// decides when and in which transaction they run.
extension Finisher {
    /// The guarded state changes for `entries`: one statement per kind of outcome present, each
    /// returning the `job_id`s it changed.
    func guardedStatements(_ entries: [Entry]) -> [PQStatement] {
        guard !entries.isEmpty else { return [] }
        var complete: [Entry] = [], cancel: [(Entry, String)] = [], retry: [(Entry, String, Duration)] = []
        var dead: [(Entry, DeadLetterReason, String)] = [], release: [(Entry, String, Duration?)] = []
        var snooze: [(Entry, String, Duration)] = []
        for entry in entries {
            switch entry.resolution {
            case .complete: complete.append(entry)
            case .cancel(let reason): cancel.append((entry, Self.clean(reason)))
            case .retry(let error, let wait): retry.append((entry, Self.clean(error), wait))
            case .deadLetter(let reason, let error): dead.append((entry, reason, Self.clean(error)))
            case .release(let reason, let wait): release.append((entry, Self.clean(reason), wait))
            case .snooze(let reason, let wait): snooze.append((entry, Self.clean(reason), wait))
            }
        }
        var statements: [PQStatement] = []
        let worker = store.workerID
        /// The statement for one kind of outcome, if any entry has it: the entries' ids, attempts
        /// and this worker, how long ago their handlers returned unless `ended` is false, then `more`.
        func add(_ query: PQQuery, _ e: [Entry], ended: Bool = true, _ more: [any PQEncodable] = []) {
            guard !e.isEmpty else { return }
            let guarded: [any PQEncodable] = [ids(e), attempts(e), worker] + (ended ? [sinceEnded(e)] : [])
            statements.append(PQStatement(query, guarded + more))
        }
        let queries = store.statements
        add(queries.completeJobs, complete)
        add(queries.cancelJobs, cancel.map(\.0), [PQArray(cancel.map(\.1))])
        add(queries.retryJobs, retry.map(\.0), [PQArray(retry.map(\.1)), PQArray(retry.map { PQInterval($0.2) })])
        add(
            queries.deadLetterJobs, dead.map(\.0),
            [PQArray(dead.map(\.2)), PQArray(dead.map(\.1.rawValue)), PQArray(dead.map(\.0.job.maxAttempts))])
        add(
            queries.releaseJobs, release.map(\.0),
            [PQArray(release.map(\.1)), PQArray(release.map { $0.2.map(PQInterval.init) })])
        add(
            queries.snoozeJobs, snooze.map(\.0), ended: false,
            [PQArray(snooze.map(\.1)), PQArray(snooze.map { PQInterval($0.2) })])
        return statements
    }

    /// How long ago each entry's handler returned.
    private func sinceEnded(_ entries: [Entry]) -> PQArray<PQInterval> {
        let now = ContinuousClock.now
        return PQArray(entries.map { PQInterval(now - $0.ended) })
    }
    private func ids(_ entries: [Entry]) -> PQArray<Int64> { PQArray(entries.map(\.job.id)) }
    private func attempts(_ entries: [Entry]) -> PQArray<Int> { PQArray(entries.map(\.job.attempt)) }

    /// Error texts go into `text` columns: no NUL bytes (PostgreSQL refuses them), and capped.
    static func clean(_ text: String) -> String {
        var cleaned = text.replacingOccurrences(of: "\u{0}", with: "\u{FFFD}")
        if cleaned.count > 2000 { cleaned = String(cleaned.prefix(2000)) + "…" }
        return cleaned
    }
}
