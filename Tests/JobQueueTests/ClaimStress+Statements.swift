import Foundation
@testable import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// How the keyed-claim search runs a statement in a session, lets blocked sessions move, and
/// waits for them.
extension ClaimStress {
    // MARK: Statements

    /// Starts a statement on `session` in a task of its own; `then` runs on the driver when it ends.
    func run(
        _ session: Session, _ query: PQQuery, _ bindings: [any PQEncodable] = [],
        then: @escaping (Outcome) -> Void
    ) {
        let connection = session.connection
        let label =
            query.name.isEmpty ? String(query.sql.prefix(40)).replacingOccurrences(of: "\n", with: " ") : query.name
        let values = bindings.map { $0.postgresText ?? "NULL" }
        note("s\(session.index)\(session.inTransaction ? "*" : "") \(label) \(values)")
        let done = Flag()
        let task = Task<Outcome, Never> {
            defer { done.set() }
            do {
                return .rows(try await connection.query(query, bindings))
            } catch let error as PQError {
                return .failed(error)
            } catch {
                return .failed(PQError(code: .client, message: "\(error)"))
            }
        }
        session.running = (task, done, then)
    }

    /// A one-off statement (not prepared).
    func run(
        _ session: Session, _ sql: String, _ bindings: [any PQEncodable] = [],
        then: @escaping (Outcome) -> Void
    ) {
        run(session, PQQuery("", sql), bindings, then: then)
    }

    /// Waits until `session`'s statement ends, or waits on a lock that only idle sessions hold
    /// (their next moves decide when it runs). A statement waiting on a busy session waits on:
    /// that one ends, or the two deadlock and PostgreSQL ends one. Waiting for that, instead of
    /// moving on, keeps a seed's interleaving the same from run to run.
    func settle(_ session: Session) async throws {
        var polls = 0
        defer { if session.running != nil { note("  s\(session.index) waits") } }
        while let running = session.running {
            if running.done.isSet {
                try await complete(session)
                return
            }
            polls += 1
            if polls > 3, try await isBlockedByIdleSessions(session) {
                totals.blocked += 1
                return
            }
            if polls > 20_000 {
                failure = "a statement of session \(session.index) neither ended nor waited on a lock for 20 s"
                return
            }
            try await Task.sleep(for: .microseconds(polls < 20 ? 200 : 1_000))
        }
    }

    /// Settles every session with a statement under way (after a move that may have freed them).
    func settleAll() async throws {
        for session in sessions where session.running != nil { try await settle(session) }
    }

    /// True when `session` waits on a lock, and so does every session it waits on, down to
    /// sessions that are idle: nothing moves until the driver moves one of those.
    func isBlockedByIdleSessions(_ session: Session) async throws -> Bool {
        let result = try await control.query(
            PQQuery(
                "blockers", "SELECT pid, pg_blocking_pids(pid)::text AS pids FROM unnest($1::int[]) AS pid"),
            [PQArray(sessions.map { Int($0.pid) })])
        var blockers: [Int32: [Int32]] = [:]
        for row in result.rows {
            let text: String = try row.decode("pids")
            blockers[try row.decode("pid")] = text.trimmingCharacters(in: CharacterSet(charactersIn: "{}"))
                .split(separator: ",").compactMap { Int32($0) }
        }
        var resting = Set(sessions.filter { $0.running == nil || $0.running!.done.isSet }.map(\.pid))
        var changed = true
        while changed {
            changed = false
            for other in sessions where !resting.contains(other.pid) {
                let waits = blockers[other.pid] ?? []
                if !waits.isEmpty, waits.allSatisfy({ resting.contains($0) }) {
                    resting.insert(other.pid)
                    changed = true
                }
            }
        }
        return resting.contains(session.pid)
    }

    func note(_ line: String) {
        trace.append(line)
        if trace.count > 80 { trace.removeFirst(trace.count - 80) }
    }

    /// Handles a finished statement's outcome.
    func complete(_ session: Session) async throws {
        guard let running = session.running else { return }
        let outcome = await running.task.value
        session.running = nil
        switch outcome {
        case .rows(let result):
            let ids =
                result.columns.contains("id") ? result.rows.compactMap { try? $0.decode("id", as: Int64.self) } : []
            note("  s\(session.index) done: \(result.count) rows \(ids)")
        case .failed(let error): note("  s\(session.index) failed: \(error)")
        }
        if case .failed(let error) = outcome {
            switch error.sqlState {
            case "40P01":
                totals.deadlocks += 1
            case _ where error.code == .connectionLost:
                break
            default:
                failure = "session \(session.index): unexpected error \(error)"
            }
            if session.inTransaction { session.aborted = true }
        }
        running.then(outcome)
    }

    /// Every session whose statement was waiting may have moved on: settle them all.
    func settleWaiting() async throws {
        for session in sessions where session.running != nil {
            if session.running!.done.isSet { try await complete(session) }
        }
    }

    func waitForAny() async throws {
        for _ in 0..<20_000 {
            try await settleWaiting()
            if sessions.contains(where: { $0.running == nil }) { return }
            try await Task.sleep(for: .milliseconds(1))
        }
        failure = "every session waited on a lock for 20 s"
    }
}
