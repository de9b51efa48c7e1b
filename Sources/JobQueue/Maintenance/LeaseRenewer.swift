import LibPQ
import Logging

/// What holds leases: the worker, whose running handlers the renewer cancels when their leases
/// are gone.
protocol LeaseHolder: Sendable {
    /// The jobs whose leases are renewed: running, or waiting for their outcome to be written.
    var heldJobIDs: [Int64] { get }
    /// Cancels the handlers still running for these jobs, whose leases are gone; returns the jobs
    /// whose handlers were cancelled.
    func leasesLost(_ ids: Set<Int64>) -> [Int64]
}

/// Extends the leases of the jobs this replica holds, every third of the lease. A handler whose
/// lease is gone works for nothing (another replica may run the job now, and its outcome would be
/// dropped), so it is cancelled.
struct LeaseRenewer: Sendable {
    let store: JobStore
    let lease: Duration
    let holder: any LeaseHolder
    let logger: Logger
    let signals: WorkerTestSignals

    func run(_ connections: PQConnectionPool) async {
        let ids = holder.heldJobIDs
        guard !ids.isEmpty else { return signals.leasesLost.signal([]) }
        do {
            let lost = Set(
                try await connections.withConnection { connection in
                    try await store.extendLeases(connection, ids: ids, lease: lease)
                })
            let cancelled = lost.isEmpty ? [] : holder.leasesLost(lost)
            if !cancelled.isEmpty {
                logger.warning(
                    "leases lost for jobs still running here; cancelling them", metadata: ["job.ids": "\(cancelled)"])
            }
            signals.leasesLost.signal(cancelled)
        } catch {
            logger.warning("could not renew leases", metadata: ["error": "\(error)"])
        }
    }
}
