import LibPQ
import Logging
import Metrics

// The replica's upkeep, beside its claim loop and on a connection of its own: leases renewed,
// other replicas' expired leases reaped, concurrency keys reconciled.
extension JobWorker {
    /// Renews this replica's leases every third of the lease, reaps other replicas' expired
    /// ones and, every ``JobWorkerConfiguration/keyRepairInterval``, mends broken concurrency
    /// keys, on a connection of its own.
    func maintainLeases(_ connections: PostgresConnectionPool) async {
        let clock = ContinuousClock()
        let renewEvery = configuration.lease / 3
        var nextRenewal = clock.now + renewEvery
        var nextReap = clock.now
        let repairEvery = configuration.keyRepairInterval
        var nextRepair = repairEvery.map { clock.now + $0 }
        while !Task.isCancelled {
            if clock.now >= nextReap {
                nextReap = clock.now + configuration.reapInterval
                await reap(connections)
            }
            if clock.now >= nextRenewal {
                nextRenewal = clock.now + renewEvery
                if configuration.renewsLeases { await renew(connections) }
            }
            if let repairEvery, let due = nextRepair, clock.now >= due {
                nextRepair = clock.now + repairEvery
                await repairKeys(connections)
            }
            try? await Task.sleep(until: [nextRenewal, nextReap, nextRepair ?? nextReap].min()!, clock: clock)
        }
    }

    /// The queue's own maintenance, as River runs its maintenance services beside the queue: the
    /// claim's bookkeeping is kept exact by its wake-ups, and the stress test searches the races
    /// between them; this is the net under a race nobody has found yet, so that it delays a key's
    /// jobs by one interval instead of stranding them. Each mended key is a warning and a count:
    /// it means a defect to report. A key parked under a lower limit than this replica's (limits
    /// raised by a deploy) is unparked too, as routine.
    func repairKeys(_ connections: PostgresConnectionPool) async {
        let keyLimits = handlers.compactMapValues(\.concurrencyLimit)
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
        } catch {
            logger.debug("could not check concurrency keys", metadata: ["error": "\(error)"])
        }
    }

    func reap(_ connections: PostgresConnectionPool) async {
        do {
            let reaped = try await connections.withConnection { connection in
                try await store.reapExpiredLeases(
                    connection, defaultMaxAttempts: configuration.retryStrategy.maxAttempts)
            }
            guard !reaped.isEmpty else { return }
            for (kind, count) in reaped {
                Counter(label: metrics.jobsLost, dimensions: [("kind", kind)]).increment(by: count)
            }
            logger.warning(
                "returned jobs with expired leases to the queue", metadata: ["jobs": "\(reaped.values.reduce(0, +))"])
            wakeUps.ring()
        } catch {
            logger.debug("could not reap expired leases", metadata: ["error": "\(error)"])
        }
    }

    func renew(_ connections: PostgresConnectionPool) async {
        let ids = state.withLock { state in Array(Set(state.running.keys.map(\.id)).union(state.writing.keys.map(\.id)))
        }
        guard !ids.isEmpty else { return }
        do {
            let lost = Set(
                try await connections.withConnection { connection in
                    try await store.extendLeases(connection, ids: ids, lease: configuration.lease)
                })
            guard !lost.isEmpty else { return }
            // A handler whose lease is gone is working for nothing (another replica may run the
            // job now, and its outcome would be dropped): cancel it. A job whose outcome is being
            // written may already be back in the queue: it is not lost.
            let toStop = state.withLock { state in
                state.running.filter { lost.contains($0.key.id) }.map { key, running in
                    state.stopped[key] = .leaseLost
                    return running
                }
            }
            guard !toStop.isEmpty else { return }
            logger.warning(
                "leases lost for jobs still running here; cancelling them",
                metadata: ["job.ids": "\(toStop.map(\.job.id))"])
            for running in toStop { running.stop.yield(.leaseLost) }
        } catch {
            logger.warning("could not renew leases", metadata: ["error": "\(error)"])
        }
    }
}
