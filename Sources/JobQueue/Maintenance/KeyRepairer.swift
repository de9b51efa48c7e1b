import LibPQ
import Logging
import Metrics

/// The queue's own maintenance, as River runs its maintenance services beside the queue: the
/// claim's bookkeeping is kept exact by its wake-ups, and the stress test searches the races
/// between them; this is the net under a race nobody has found yet, so that it delays a key's
/// jobs by one interval instead of stranding them. Each mended key is a warning and a count: it
/// means a defect to report. A key parked under a lower limit than this replica's (limits raised
/// by a deploy) is unparked too, as routine.
struct KeyRepairer: Sendable {
    let store: JobStore
    let kinds: [String]
    /// Per kind, the most jobs sharing one key that may run at once.
    let keyLimits: [String: Int]
    let metrics: MetricNames
    let logger: Logger
    let wakeUps: WakeUps<Void>
    let signals: WorkerTestSignals

    func run(_ connections: PQConnectionPool) async {
        guard !keyLimits.isEmpty else { return }
        do {
            let mended = try await connections.withConnection { connection in
                try await store.repairConcurrencyKeys(connection, kinds: kinds, keyLimits: keyLimits)
            }
            for key in mended {
                let metadata: Logger.Metadata = [
                    "job.kind": "\(key.kind)", "concurrency_key.priority": "\(key.priority)",
                    "concurrency_key.was": "\(key.was)",
                ]
                if key.was == "limit_raised" {
                    logger.info("unparked a concurrency key parked under a lower limit", metadata: metadata)
                } else {
                    // The key itself is left out: it may name a tenant or an endpoint.
                    logger.warning(
                        "repaired a concurrency key that a race left unable to run its due jobs", metadata: metadata)
                    Counter(label: metrics.keysRepaired, dimensions: [("kind", key.kind), ("was", key.was)])
                        .increment()
                }
            }
            if !mended.isEmpty { wakeUps.ring() }
            signals.keysRepaired.signal(mended.count)
        } catch {
            logger.debug("could not check concurrency keys", metadata: ["error": "\(error)"])
        }
    }
}
