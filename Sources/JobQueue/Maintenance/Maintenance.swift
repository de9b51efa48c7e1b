import LibPQ

/// The replica's maintenance services, beside its claim loop and on a connection of its own (so
/// that they never wait behind handlers holding the shared pool): the reaper every
/// ``JobWorkerConfiguration/reapInterval``, the lease renewer every third of the lease (unless
/// ``JobWorkerConfiguration/renewsLeases`` is off), and the key repairer every
/// ``JobWorkerConfiguration/keyRepairInterval``. One runs at a time; each signals its
/// ``WorkerTestSignals`` after each run. The history upkeep (``HistoryUpkeep``) runs in a task
/// and on a connection of its own: a detach waits for every query reading the table it leaves,
/// and the renewer must not wait behind it while leases run out.
struct Maintenance: Sendable {
    let reaper: Reaper
    let reapInterval: Duration
    let renewer: LeaseRenewer?
    let renewInterval: Duration
    let repairer: KeyRepairer
    let repairInterval: Duration?

    /// Runs the services on their schedules until the task is cancelled.
    func run(_ connections: PQConnectionPool) async {
        let clock = ContinuousClock()
        var nextRenewal = clock.now + renewInterval
        var nextReap = clock.now
        var nextRepair = repairInterval.map { clock.now + $0 }
        while !Task.isCancelled {
            if clock.now >= nextReap {
                nextReap = clock.now + reapInterval
                await reaper.run(connections)
            }
            if clock.now >= nextRenewal {
                nextRenewal = clock.now + renewInterval
                await renewer?.run(connections)
            }
            if let repairInterval, let due = nextRepair, clock.now >= due {
                nextRepair = clock.now + repairInterval
                await repairer.run(connections)
            }
            try? await Task.sleep(until: [nextRenewal, nextReap, nextRepair ?? nextReap].min()!, clock: clock)
        }
    }
}
