import LibPQ
import Synchronization

// The claim in the outcome's transaction. A keyed job's handler that returns keeps its slot
// (JobWorker+StateMachine.swift); the finisher asks how many jobs to claim with a batch of
// outcomes, runs the claim before the batch's commit, and hands the rows back here. The jobs go
// on the books at once and wait in `handOffs` for the claim loop, which owns the task group
// that runs jobs, to start them.
extension JobWorker: Finisher.OutcomeClaimer {
    /// Jobs claimed with outcomes, waiting for the claim loop to start them.
    struct HandOffs: Sendable {
        var attempts: [Attempt] = []
        var unreadable: [(job: Job, reason: String)] = []
    }

    /// One claimed job on its way to a task: what cancels it, and the stream its task listens on.
    struct Attempt: Sendable {
        let job: Job
        let key: AttemptKey
        let stops: AsyncStream<StopReason>
        let stop: AsyncStream<StopReason>.Continuation

        init(_ job: Job) {
            self.job = job
            self.key = AttemptKey(id: job.id, attempt: job.attempt)
            (stops, stop) = AsyncStream.makeStream(of: StopReason.self, bufferingPolicy: .bufferingNewest(1))
        }
    }

    func claimLimit(for entries: [Finisher.Entry]) -> Int {
        let keys = entries.map { AttemptKey(id: $0.job.id, attempt: $0.job.attempt) }
        return min(state.withLock { $0.slotsHeld(by: keys) }, configuration.claimBatchSize)
    }

    func claimed(
        _ rows: PQResult?, with entries: [Finisher.Entry], on connection: PQConnection
    ) async -> [Finisher.Entry] {
        var claimed = JobStore.Claimed()
        if let rows {
            do {
                claimed = try await jobs(claimedBy: rows, on: connection)
            } catch {
                logger.error(
                    "could not read the jobs claimed with outcomes; their leases will return them to the queue",
                    metadata: ["error": "\(error)"])
            }
        }
        let batch = entries.map { AttemptKey(id: $0.job.id, attempt: $0.job.attempt) }
        let attempts = claimed.jobs.map(Attempt.init)
        let accepted = handOffs.withLock { handOffs in
            let accepted = state.withLock { state in
                state.claimedWithOutcomes(
                    freeing: batch, started: attempts.map { ($0.key, $0.stop) },
                    unreadable: claimed.unreadable.map { AttemptKey(id: $0.job.id, attempt: $0.job.attempt) })
            }
            if accepted {
                handOffs.attempts += attempts
                handOffs.unreadable += claimed.unreadable
            }
            return accepted
        }
        // Starts the jobs handed off, and claims for the slots the claim left over.
        wakeUps.ring()
        if accepted { return [] }
        // The drain has ended: nothing will run them.
        return (claimed.jobs + claimed.unreadable.map(\.job)).map {
            Finisher.Entry(job: $0, resolution: .releasedAtShutdown, statements: [], ended: .now)
        }
    }

    /// Starts the jobs claimed with outcomes; called by the claim loop, which owns `group`.
    func startHandedOff(finisher: Finisher, group: inout DiscardingTaskGroup) {
        let handed = handOffs.withLock { handOffs in
            defer { handOffs = HandOffs() }
            return handOffs
        }
        guard !handed.attempts.isEmpty || !handed.unreadable.isEmpty else { return }
        start(handed.attempts, unreadable: handed.unreadable, finisher: finisher, group: &group)
    }
}
