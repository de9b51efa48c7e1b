import Foundation
@testable import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// Ordered keys in the keyed-claim search: which keys are ordered, and the check that none of
/// them ran a job while an older one of its key was waiting.
extension ClaimStress {
    /// Makes `keys` (`kind/key`) ordered for the whole run.
    func orderKeys(_ keys: Set<String>) async throws {
        orderedKeys = keys
        for name in keys.sorted() {
            let parts = name.split(separator: "/").map(String.init)
            _ = try await control.query(
                PQQuery("orderKey", "SELECT \(schema).set_concurrency_key_ordered($1, $2, true)"), [parts[0], parts[1]])
        }
    }

    /// Per ordered key, its oldest waiting job (lowest id) and whether it is due.
    func oldestOfOrderedKeys() async throws -> [String: (id: Int64, due: Bool)] {
        guard !orderedKeys.isEmpty else { return [:] }
        let result = try await control.query(
            PQQuery(
                "oldestOrdered",
                """
                SELECT DISTINCT ON (kind, concurrency_key) kind || '/' || concurrency_key AS name, id,
                       run_at <= now() AS due
                FROM \(schema).jobs
                WHERE state = 'available' AND kind || '/' || concurrency_key = ANY($1::text[])
                ORDER BY kind, concurrency_key, id
                """), [PQArray(orderedKeys.sorted())])
        var oldest: [String: (id: Int64, due: Bool)] = [:]
        for row in result.rows { oldest[try row.decode("name")] = (try row.decode("id"), try row.decode("due")) }
        return oldest
    }

    /// No running job of an ordered key has an older job of its key waiting that was committed
    /// before the claim that took it began (one committed later, by an insert that got its id
    /// first, may rightly wait behind it: ids are handed out before commit).
    func checkOrder() async throws {
        let result = try await control.query(
            PQQuery(
                "orderedJobs",
                """
                SELECT kind || '/' || concurrency_key AS name, id, state, coalesce(locked_by, '') AS locked_by
                FROM \(schema).jobs WHERE kind || '/' || concurrency_key = ANY($1::text[])
                ORDER BY id
                """), [PQArray(orderedKeys.sorted())])
        var waiting: [String: [Int64]] = [:]
        var running: [(name: String, id: Int64, worker: String)] = []
        for row in result.rows {
            let id: Int64 = try row.decode("id")
            let name: String = try row.decode("name")
            if firstSeen[id] == nil { firstSeen[id] = totals.steps }
            if try row.decode("state", as: String.self) == "running" {
                running.append((name, id, try row.decode("locked_by")))
            } else {
                waiting[name, default: []].append(id)
            }
        }
        for job in running {
            guard let serialText = job.worker.split(separator: "/").first?.split(separator: "#").last,
                let serial = Int(serialText), let began = claimStarts[serial]
            else { continue }
            let skipped = (waiting[job.name] ?? []).filter { $0 < job.id && firstSeen[$0, default: .max] < began }
            if !skipped.isEmpty {
                failure =
                    "ordered key \(job.name) runs job \(job.id) (claim #\(serial), begun at step \(began)) while older "
                    + "jobs \(skipped) of its key, committed before that claim began, wait"
                return
            }
        }
    }
}
