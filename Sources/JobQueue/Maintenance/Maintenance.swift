import LibPQ

/// The replica's maintenance services, beside its claim loop and on a connection of its own (so
/// that they never wait behind handlers holding the shared pool): the reaper every
/// ``JobWorkerConfiguration/reapInterval``, the lease renewer every third of the lease (unless
/// ``JobWorkerConfiguration/renewsLeases`` is off), and the key repairer every
/// ``JobWorkerConfiguration/keyRepairInterval``, and the history upkeep every
/// ``HistoryUpkeepConfiguration/interval`` (``JobWorkerConfiguration/history``). One runs at a time; each signals its
/// ``WorkerTestSignals`` after each run.
struct Maintenance: Sendable {
    let reaper: Reaper
    let reapInterval: Duration
    let renewer: LeaseRenewer?
    let renewInterval: Duration
    let repairer: KeyRepairer
    let repairInterval: Duration?
    let history: HistoryUpkeep?

    /// Runs the services on their schedules until the task is cancelled.
    func run(_ connections: PQConnectionPool) async {
        let clock = ContinuousClock()
        var nextRenewal = clock.now + renewInterval
        var nextReap = clock.now
        var nextRepair = repairInterval.map { clock.now + $0 }
        var nextHistory = history.map { _ in clock.now }
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
            if let history, let due = nextHistory, clock.now >= due {
                nextHistory = clock.now + history.configuration.interval
                await history.run(connections)
            }
            try? await Task.sleep(
                until: [nextRenewal, nextReap, nextRepair ?? nextReap, nextHistory ?? nextReap].min()!, clock: clock)
        }
    }
}
