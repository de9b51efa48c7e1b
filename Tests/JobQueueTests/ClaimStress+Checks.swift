import Foundation
@testable import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// What the keyed-claim search checks after each step and at quiescence.
extension ClaimStress {
    // MARK: Checks

    /// No key runs more jobs than the largest limit among the claims that took its running jobs
    /// (read from `locked_by`, which names the limits its claim ran under).
    func checkLimits() async throws {
        try await settleWaiting()
        let result = try await control.query(
            PQQuery(
                "runningByKey",
                """
                SELECT kind, concurrency_key, array_agg(id ORDER BY id)::text AS ids,
                       string_agg(locked_by, ' ' ORDER BY id) AS workers
                FROM \(schema).jobs
                WHERE state = 'running' AND concurrency_key IS NOT NULL
                GROUP BY kind, concurrency_key
                """))
        for row in result.rows {
            let kind: String = try row.decode("kind")
            let key: String = try row.decode("concurrency_key")
            let ids: String = try row.decode("ids")
            let workers = try row.decode("workers", as: String.self).split(separator: " ").map(String.init)
            let bound = workers.map { self.bound(kind: kind, key: key, claimedBy: $0) }.max() ?? 0
            if workers.count > bound {
                failure =
                    "key \(kind)/\(key) runs \(workers.count) jobs \(ids), above every limit it was claimed "
                    + "under (at most \(bound): \(workers))"
                return
            }
        }
    }

    /// No key is parked while it has room: a parked row (head 'infinity', head_id the limit it
    /// was parked under) of a key with waiting jobs, fewer running jobs than that limit and the
    /// kind's limit now, and no wake-up left to fold for it, would wait for a new job of its key
    /// to arrive. Everything is read in one snapshot: a claim that parked a row has committed
    /// the jobs it took, and a job that stopped running has committed its wake-up.
    func checkParked() async throws {
        let result = try await control.query(
            PQQuery(
                "parkedWithRoom",
                """
                SELECT c.kind, c.concurrency_key, c.priority, c.head_id,
                       (SELECT count(*) FROM \(schema).jobs j
                        WHERE j.kind = c.kind AND j.concurrency_key = c.concurrency_key
                          AND j.state = 'running') AS running
                FROM \(schema).concurrency_keys c
                WHERE c.head_run_at = 'infinity'
                  AND NOT EXISTS (SELECT 1 FROM \(schema).concurrency_key_wakeups w
                                  WHERE w.kind = c.kind AND w.concurrency_key = c.concurrency_key)
                  AND EXISTS (SELECT 1 FROM \(schema).jobs j
                              WHERE j.kind = c.kind AND j.concurrency_key = c.concurrency_key
                                AND j.priority = c.priority AND j.state = 'available')
                """))
        for row in result.rows {
            let kind: String = try row.decode("kind")
            let running: Int = try row.decode("running")
            let parkedUnder: Int64 = try row.decode("head_id")
            let key: String = try row.decode("concurrency_key")
            let room = min(Int(clamping: parkedUnder), currentLimit(kind: kind, key: key))
            if running < room {
                let priority: Int = try row.decode("priority")
                failure =
                    "key \(kind)/\(key) (priority \(priority)) is parked with \(running) running jobs, below its "
                    + "limit \(room), and no wake-up is left for it: stranded until a new job of the key arrives"
                return
            }
        }
    }

    /// The limit of `kind` that a claim by `worker` (`w<session>/a=2,b=1`) ran under.
    static func limit(of kind: String, claimedBy worker: String) -> Int {
        guard let limits = worker.split(separator: "/").last else { return 0 }
        for pair in limits.split(separator: ",") {
            let parts = pair.split(separator: "=")
            if parts.count == 2, parts[0] == kind { return Int(parts[1]) ?? 0 }
        }
        return Int.max
    }

    /// Ends every transaction, then checks that the next claim takes a job of every key that has
    /// a due waiting job and a free slot.
    func quiesce() async throws {
        totals.quiescences += 1
        // End every transaction; a statement that waited on one may then run and leave its own
        // transaction open, so go round until every session rests.
        for _ in 0..<50 {
            for session in sessions where session.running != nil { try await settle(session) }
            for session in sessions where session.inTransaction && session.running == nil {
                let commit = !session.aborted && chance(70)
                run(session, commit ? "COMMIT" : "ROLLBACK") { _ in self.ended(session, committed: commit) }
                try await settle(session)
            }
            try await settleWaiting()
            if !sessions.contains(where: { $0.running != nil || $0.inTransaction }) { break }
            try await Task.sleep(for: .milliseconds(2))
        }
        guard !sessions.contains(where: { $0.running != nil || $0.inTransaction }) else {
            if failure == nil { failure = "sessions did not come to rest" }
            return
        }
        if failure != nil { return }
        try await control.execute(script: "DELETE FROM \(schema).paused_kinds", name: "resumeAll")
        let due = try await control.query(
            PQQuery(
                "claimableKeys",
                """
                SELECT j.kind, j.concurrency_key,
                       count(*) FILTER (WHERE j.state = 'running') AS running,
                       count(*) FILTER (WHERE j.state = 'available' AND j.run_at <= now()) AS waiting,
                       (SELECT min(c.head_id) FROM \(schema).concurrency_keys c
                        WHERE c.kind = j.kind AND c.concurrency_key = j.concurrency_key
                          AND c.head_run_at = 'infinity') AS parked_under
                FROM \(schema).jobs j WHERE j.concurrency_key IS NOT NULL
                GROUP BY j.kind, j.concurrency_key
                """))
        var expected: Set<String> = []
        let oldest = try await oldestOfOrderedKeys()
        for row in due.rows {
            let kind: String = try row.decode("kind")
            let running: Int = try row.decode("running")
            let waiting: Int = try row.decode("waiting")
            // A key parked under a lower limit than its kind's now waits for one of its running
            // jobs to end (or for the reconciler): it has as many running as that limit.
            let parkedUnder = try row.decodeIfPresent("parked_under", as: Int.self) ?? Int.max
            let key: String = try row.decode("concurrency_key")
            // An ordered key has a job to run only when its oldest waiting job is due.
            let hasDue = orderedKeys.contains("\(kind)/\(key)") ? oldest["\(kind)/\(key)"]?.due == true : waiting > 0
            if hasDue, running < min(currentLimit(kind: kind, key: key), parkedUnder) {
                expected.insert("\(kind)/\(key)")
            }
        }
        let keyed = limits.sorted { $0.key < $1.key }
        let claimed = try await control.query(
            statements.claimJobs,
            [
                PQArray(Self.kinds), 1_000,
                "quiescence#\(openClaimWindow(closed: true))/"
                    + keyed.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
                PQInterval(.seconds(3600)),
                PQArray(keyed.map(\.key)), PQArray(keyed.map(\.value)),
            ])
        var got: Set<String> = []
        for row in claimed.rows {
            let kind: String = try row.decode("kind")
            let name = "\(kind)/\(try row.decode("concurrency_key", as: String.self))"
            got.insert(name)
            let id: Int64 = try row.decode("id")
            if orderedKeys.contains(name), id != oldest[name]?.id {
                failure =
                    "ordered key \(name): the quiescence claim took job \(id), not its oldest \(oldest[name]?.id ?? 0)"
                return
            }
        }
        let stranded = expected.subtracting(got)
        if !stranded.isEmpty {
            let keys = try await control.query(
                PQQuery(
                    "keyRows",
                    "SELECT kind, concurrency_key, priority, head_run_at::text AS head FROM \(schema).concurrency_keys")
            )
            let rows = try keys.rows.map {
                "\(try $0.decode("kind", as: String.self))/\(try $0.decode("concurrency_key", as: String.self))"
                    + " p\(try $0.decode("priority", as: Int.self)) \(try $0.decode("head", as: String.self))"
            }
            let found =
                "stranded: \(stranded.sorted()) have a due waiting job and a free slot, but the next claim "
                + "took none of them (key rows: \(rows))"
            if KeyedClaimStressTests.environment["STRESS_STRICT"] != nil {
                failure = found
            } else if try await mendedByReconciler(stranded, keyed: keyed) {
                // The product's promise holds (the reconciler turns the race into a delay); the
                // race is still a finding: print it, and `make chaos` (strict) fails on it.
                totals.mended += stranded.count
                print("keyed claim stress: seed \(seed): \(found); mended by the reconciler (STRESS_STRICT=1 fails)")
            } else {
                failure = found + ", and the reconciler did not mend them"
            }
        }
        try await checkLimits()
    }

    /// Runs the reconciler's statement as a replica would, then a claim: true when it takes a job
    /// of every key in `stranded`.
    func mendedByReconciler(_ stranded: Set<String>, keyed: [(key: String, value: Int)]) async throws -> Bool {
        _ = try await control.query(
            PQQuery("", "SELECT * FROM \(schema).repair_concurrency_keys($1, $2, $3)"),
            [PQArray(Self.kinds), PQArray(keyed.map(\.key)), PQArray(keyed.map(\.value))])
        let claimed = try await control.query(
            statements.claimJobs,
            [
                PQArray(Self.kinds), 1_000,
                "reconciled#\(openClaimWindow(closed: true))/"
                    + keyed.map { "\($0.key)=\($0.value)" }.joined(separator: ","),
                PQInterval(.seconds(3600)), PQArray(keyed.map(\.key)), PQArray(keyed.map(\.value)),
            ])
        let got = Set(
            try claimed.rows.map {
                "\(try $0.decode("kind", as: String.self))/\(try $0.decode("concurrency_key", as: String.self))"
            })
        return stranded.isSubset(of: got)
    }
}
