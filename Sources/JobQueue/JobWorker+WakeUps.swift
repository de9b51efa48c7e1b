import LibPQ
import Metrics

// What wakes the claim loop besides finished jobs: notifications, the poll ticker, and the
// maintenance services (reaped leases, mended keys); and what the lease renewer asks of the
// worker.
extension JobWorker: LeaseHolder {
    func consumeNotifications(_ listener: PQListener) async {
        let kinds = Set(self.kinds)
        for await event in listener.events {
            switch event {
            case .notification(_, let payload):
                // The payload names the kind inserted; empty means "something changed".
                if payload.isEmpty || kinds.contains(payload) { wakeUps.ring() }
            case .connected(let reconnected):
                listening.store(true, ordering: .relaxed)
                Gauge(label: metrics.listenConnected).record(1)
                if reconnected {
                    logger.info("LISTEN connection restored; rescanning")
                    wakeUps.ring()
                }
            case .disconnected:
                listening.store(false, ordering: .relaxed)
                Gauge(label: metrics.listenConnected).record(0)
            }
        }
    }

    /// The fallback rescan every poll interval, and a 100 ms pace while shutting down.
    func tick() async {
        let clock = ContinuousClock()
        var next = clock.now + configuration.pollInterval
        let step = min(configuration.pollInterval, .milliseconds(100))
        while !Task.isCancelled {
            try? await Task.sleep(for: step)
            if clock.now >= next || isStopping {
                next = clock.now + configuration.pollInterval
                wakeUps.ring()
            }
        }
    }

    /// The maintenance services (Maintenance/), on the worker's configuration.
    var maintenance: Maintenance {
        Maintenance(
            reaper: Reaper(
                store: store, defaultMaxAttempts: configuration.retryStrategy.maxAttempts, metrics: metrics,
                logger: logger, wakeUps: wakeUps, signals: testSignals),
            reapInterval: configuration.reapInterval,
            renewer: configuration.renewsLeases
                ? LeaseRenewer(
                    store: store, lease: configuration.lease, holder: self, logger: logger, signals: testSignals)
                : nil,
            renewInterval: configuration.lease / 3,
            repairer: KeyRepairer(
                store: store, kinds: kinds, keyLimits: keyLimits, metrics: metrics,
                logger: logger, wakeUps: wakeUps, signals: testSignals),
            repairInterval: configuration.keyRepairInterval)
    }

    /// The history upkeep, when the worker keeps the history (``JobWorkerConfiguration/history``).
    var historyUpkeep: HistoryUpkeep? {
        configuration.history.map {
            HistoryUpkeep(
                schema: configuration.schema, configuration: $0, concurrently: configuration.preparedStatements,
                metrics: metrics, logger: logger, signals: testSignals)
        }
    }

    var heldJobIDs: [Int64] { state.withLock { $0.heldJobIDs } }

    func leasesLost(_ ids: Set<Int64>) -> [Int64] {
        let cancelled = state.withLock { $0.leaseLost(ids) }
        for (_, stop) in cancelled { stop.yield(.leaseLost) }
        return cancelled.map(\.0.id)
    }
}
