import Logging
import Metrics

/// Each attempt's duration (`<prefix>_job_duration_seconds{kind}`) and each recorded outcome
/// (`<prefix>_jobs_total{kind,outcome}`).
struct MetricsMiddleware: JobMiddleware {
    let metrics: MetricNames

    func handle(_ job: Job, logger: Logger, next: () async -> AttemptResult) async -> AttemptResult {
        let clock = ContinuousClock()
        let started = clock.now
        let result = await next()
        let elapsed = clock.now - started
        Timer(label: metrics.jobDuration, dimensions: [("kind", job.kind)])
            .recordNanoseconds(
                elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        return result
    }

    func recorded(_ entry: Finisher.Entry, result: Finisher.Result) {
        guard case .applied = result else { return }
        Counter(
            label: metrics.jobs, dimensions: [("kind", entry.job.kind), ("outcome", entry.resolution.outcomeLabel)]
        )
        .increment()
    }
}

/// The names of the worker's metrics, under the schema's ``JobQueueSchema/metricPrefix``.
struct MetricNames: Sendable {
    let jobsClaimed: String
    let jobsInFlight: String
    let jobDuration: String
    let jobs: String
    let listenConnected: String
    let jobsLost: String
    let keysRepaired: String
    let historyPartitionsCreated: String
    let historyPartitionsDropped: String
    let historyFuturePartitions: String

    init(prefix: String) {
        jobsClaimed = prefix + "_jobs_claimed_total"
        jobsInFlight = prefix + "_jobs_in_flight"
        jobDuration = prefix + "_job_duration_seconds"
        jobs = prefix + "_jobs_total"
        listenConnected = prefix + "_listen_connected"
        jobsLost = prefix + "_jobs_lost_total"
        keysRepaired = prefix + "_keys_repaired_total"
        historyPartitionsCreated = prefix + "_history_partitions_created_total"
        historyPartitionsDropped = prefix + "_history_partitions_dropped_total"
        historyFuturePartitions = prefix + "_history_future_partitions"
    }
}
