import Foundation
import JobQueue
import LibPQ
@testable import TestSupport
import Testing

/// Gathering (``JobWorkerConfiguration/claimGatherWait``): after a full claim, the next waits for
/// half the slots or for the end of the wait. The machine's side is in JobWorkerStateMachineTests;
/// this is the claim loop's timer, which must end the wait when nothing else wakes the loop.
extension JobQueueTests {
    @Test("after a full keyed claim, the next waits for the gather wait, and its end claims without any other wake-up")
    func gatheringEndsOnItsOwn() async throws {
        try await withQueueDatabase { database in
            let started = Recorder()
            // Keyed jobs (a key each): only a full claim that took keyed jobs gathers.
            let handler = ClosureHandler(concurrencyLimit: 4) { job in
                started.record(job)
                if job.payload.text.contains("hold") { try await Task.sleep(for: .seconds(60)) }
                return .complete
            }
            // Three jobs that hold their slots and one that ends at once: the first claim takes all
            // four (a full claim of 4), and then one slot of 4 is free, fewer than half.
            func insert(_ payload: String, key: String) async throws -> Int64 {
                try #require(
                    try await database.scalar(
                        """
                        INSERT INTO \(database.schema).jobs (kind, payload, concurrency_key)
                        VALUES ('test.job', $1::jsonb, $2) RETURNING id
                        """, [payload, key], as: Int64.self))
            }
            var ids: [Int64] = []
            for (index, payload) in [#"{"s":"hold"}"#, #"{"s":"hold"}"#, #"{"s":"hold"}"#, #"{"s":"quick"}"#]
                .enumerated()
            {
                ids.append(try await insert(payload, key: "key-\(index)"))
            }
            let worker = RunningWorker(database, handlers: [handler]) {
                $0.concurrency = 4
                $0.claimBatchSize = 4
                $0.claimGatherWait = .seconds(2)
                // Neither the poll nor a notification may end the wait.
                $0.pollInterval = .seconds(3600)
                $0.shutdownTimeout = .seconds(1)
            }
            #expect(await eventually(timeout: .seconds(30)) { ids.allSatisfy { started.calls($0) == 1 } })
            let quick = try #require(started.startTimes(ids[3]).first)
            // Its insert rings the claim loop inside the wait: the machine goes on gathering.
            let late = try await insert(#"{"s":"quick"}"#, key: "key-late")
            #expect(await eventually(timeout: .seconds(30)) { started.calls(late) == 1 })
            let lateStart = try #require(started.startTimes(late).first)
            // The claim that took it began no earlier than 2 s after the first: it waited for the
            // gather wait (the first quick job started a moment after that claim began).
            #expect(lateStart - quick >= .milliseconds(1_500), "started \(lateStart - quick) after the first")
            try await worker.stop()
        }
    }
}
