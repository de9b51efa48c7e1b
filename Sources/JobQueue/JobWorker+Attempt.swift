import LibPQ
import Logging
import Metrics

// One attempt: the handler run inside the middleware, its outcome resolved and handed to the
// finisher, and the finisher's report.
extension JobWorker {
    func process(
        _ job: Job, key: AttemptKey, stops: AsyncStream<StopReason>, stop: AsyncStream<StopReason>.Continuation,
        finisher: Finisher
    ) async {
        var logger = self.logger
        logger[metadataKey: "job.id"] = "\(job.id)"
        logger[metadataKey: "job.kind"] = "\(job.kind)"
        logger[metadataKey: "job.attempt"] = "\(job.attempt)"
        let tracing = configuration.tracing
        let result = await middleware.handle(job, logger: logger) {
            // The handler runs in a child task so that it can be cancelled alone: when its lease
            // is lost, or when the shutdown timeout ends. It inherits the middleware's task-local
            // values: the attempt's span is its current span.
            await withTaskGroup(of: AttemptResult.self) { group in
                group.addTask { [logger] in
                    defer { stop.finish() }
                    guard let handler = self.handlers[job.kind] else {
                        return .decided(.retry("no handler for kind \(job.kind)"))
                    }
                    let context = JobContext(
                        logger: logger, database: self.database, workerID: self.configuration.workerID,
                        tracing: tracing)
                    do {
                        return .decided(try await handler.handle(job, context: context))
                    } catch {
                        return .threw(error)
                    }
                }
                // Ends when the handler's task finishes the stream, or when this task is cancelled.
                for await _ in stops { group.cancelAll() }
                return await group.next()!
            }
        }
        let holdsSlot = configuration.claimsWithOutcomes && job.concurrencyKey != nil
        let returned = state.withLock { $0.handlerReturned(key, holdsSlot: holdsSlot) }
        let resolution: Resolution
        var statements: [BoundStatement] = []
        switch result {
        case .decided(let outcome):
            // Even when cancelled: an outcome the handler knows (a webhook that was answered 2xx)
            // is recorded, not thrown away.
            statements = outcome.statements
            resolution = resolve(outcome.decision, job: job)
        case .threw(let error):
            resolution = resolveFailure(error, job: job, stopped: returned.stopped, logger: logger)
        }
        if returned.wakesClaimLoop { wakeUps.ring() }
        finisher.submit(
            .init(
                job: job, resolution: resolution, statements: statements, ended: .now,
                retryWait: policy(for: job.kind).delay(afterAttempt: job.attempt)))
        if let deadline = returned.stopFinisher { finisher.stop(deadline: deadline) }
    }

    private func resolve(_ decision: JobOutcome.Decision, job: Job) -> Resolution {
        let policy = self.policy(for: job.kind)
        switch decision {
        case .complete:
            return .complete
        case .cancel(let reason):
            return .cancel(reason: reason)
        case .fail(let reason, let code):
            return .deadLetter(reason: code, error: reason)
        case .snooze(let after, let reason):
            return .snooze(reason: reason, wait: max(after, .zero))
        case .retry(let error, let after):
            if job.isLastAttempt {
                return .deadLetter(
                    reason: .attemptsExhausted, error: "attempt \(job.attempt) of \(job.maxAttempts): \(error)")
            }
            return .retry(error: error, wait: after.map(policy.clamp) ?? policy.delay(afterAttempt: job.attempt))
        }
    }

    /// A handler that threw: released when it was cancelled or the database failed (a few times),
    /// else a failed attempt.
    private func resolveFailure(_ error: any Error, job: Job, stopped: StopReason?, logger: Logger) -> Resolution {
        if stopped != nil || Task.isCancelled {
            return .releasedAtShutdown
        }
        if let error = error as? PQError, error.isTransient {
            // The database failed, not the job (a terminated backend, a restart, a lock held
            // elsewhere past lock_timeout): try again later without spending one of the job's
            // attempts, waiting longer each time. A job that keeps breaking its connection spends
            // attempts past the cap, so it still ends in the dead letters.
            if job.released < configuration.maxUncountedReleases {
                let wait = configuration.releaseBackoff.delay(afterAttempt: job.released + 1)
                logger.info(
                    "job released after a database error",
                    metadata: ["error": "\(error)", "job.retry_in": "\(wait.compactDescription)"])
                return .release(
                    reason: "released after a database error; this attempt does not count: \(error)", wait: wait)
            }
            logger.warning(
                "database errors keep failing this job; counting the attempt",
                metadata: ["error": "\(error)", "job.released": "\(job.released)"])
        } else {
            logger.warning("job handler threw", metadata: ["error": "\(error)"])
        }
        return resolve(.retry(error: "\(type(of: error)): \(error)", after: nil), job: job)
    }

    /// Called by the finisher once outcomes are written (or given up).
    func recorded(_ results: [(Finisher.Entry, Finisher.Result)]) {
        for (entry, result) in results {
            for middleware in middleware { middleware.recorded(entry, result: result) }
            log(entry, result)
        }
        let keys = results.map { AttemptKey(id: $0.0.job.id, attempt: $0.0.job.attempt) }
        let count = state.withLock { state in
            state.outcomesRecorded(keys)
            return state.inFlight
        }
        Gauge(label: metrics.jobsInFlight).record(count)
        wakeUps.ring()
        for key in keys { testSignals.recorded.signal(.init(jobID: key.id, attempt: key.attempt)) }
    }

    private func log(_ entry: Finisher.Entry, _ result: Finisher.Result) {
        let job = entry.job
        var metadata: Logger.Metadata {
            ["job.id": "\(job.id)", "job.kind": "\(job.kind)", "job.attempt": "\(job.attempt)"]
        }
        switch result {
        case .applied:
            switch entry.resolution {
            case .deadLetter(let reason, let error):
                logger.warning(
                    "job moved to the dead letters",
                    metadata: metadata.merging(["job.reason": "\(reason.rawValue)", "error": "\(error)"]) { $1 })
            case .retry(let error, let wait):
                logger.info(
                    "job will be retried",
                    metadata: metadata.merging(["error": "\(error)", "job.retry_in": "\(wait.compactDescription)"]) {
                        $1
                    })
            default:
                logger.debug(
                    "job finished",
                    metadata: metadata.merging(["job.outcome": "\(entry.resolution.outcomeLabel)"]) { $1 }
                )
            }
        case .notHeld:
            logger.warning(
                "job's lease was lost before its outcome was recorded; the outcome was dropped", metadata: metadata)
        case .abandoned:
            logger.warning(
                "job's outcome could not be recorded before shutdown; its lease will return it to the queue",
                metadata: metadata)
        }
    }
}
