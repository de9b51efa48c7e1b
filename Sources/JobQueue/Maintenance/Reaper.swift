import LibPQ
import Logging
import Metrics

/// Returns other replicas' expired leases to the queue (or to the dead letters, for a job whose
/// lost attempt was its last), counts them as lost, and wakes the claim loop to take them.
struct Reaper: Sendable {
    let store: JobStore
    /// The attempts of jobs whose kind this replica has no strategy for.
    let defaultMaxAttempts: Int
    let metrics: MetricNames
    let logger: Logger
    let wakeUps: WakeUps<Void>
    let signals: WorkerTestSignals

    func run(_ connections: PQConnectionPool) async {
        do {
            let reaped = try await connections.withConnection { connection in
                try await store.reapExpiredLeases(connection, defaultMaxAttempts: defaultMaxAttempts)
            }
            let total = reaped.values.reduce(0, +)
            if !reaped.isEmpty {
                for (kind, count) in reaped {
                    Counter(label: metrics.jobsLost, dimensions: [("kind", kind)]).increment(by: count)
                }
                logger.warning("returned jobs with expired leases to the queue", metadata: ["jobs": "\(total)"])
                wakeUps.ring()
            }
            signals.reaped.signal(total)
        } catch {
            logger.debug("could not reap expired leases", metadata: ["error": "\(error)"])
        }
    }
}
