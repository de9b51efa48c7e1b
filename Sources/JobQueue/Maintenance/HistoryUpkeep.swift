import LibPQ
import Logging
import Metrics

/// How the replicas keep the partitioned history (``HistoryPartitions``): partitions of
/// ``partitionLength`` created ``ahead`` of time, dropped once older than ``retention``.
public struct HistoryUpkeepConfiguration: Sendable, Equatable {
    /// One partition's span of time (a day by default).
    public var partitionLength: Duration
    /// How far ahead partitions exist after each upkeep: at least three partitions' worth.
    public var ahead: Duration
    /// Partitions whose rows are all older than this are dropped; nil keeps them.
    public var retention: Duration?
    /// How often each replica runs the upkeep (at start, then every interval).
    public var interval: Duration

    public init(
        partitionLength: Duration = .seconds(86_400), retention: Duration? = .seconds(30 * 86_400),
        interval: Duration = .seconds(3_600)
    ) {
        self.partitionLength = partitionLength
        self.ahead = max(partitionLength * 3, .seconds(3 * 86_400))
        self.retention = retention
        self.interval = interval
    }
}

/// Runs ``HistoryPartitions/upkeep(length:ahead:retention:)``: logs and counts each partition
/// created or dropped, and reports the fewest future partitions as a gauge (an alert fires below
/// two). A replica that dies mid-upkeep leaves nothing half done: each step is one transaction.
struct HistoryUpkeep: Sendable {
    let schema: JobQueueSchema
    let configuration: HistoryUpkeepConfiguration
    /// DETACH CONCURRENTLY when the role owns the tables: false behind a transaction pooler
    /// (the session advisory lock that serializes it needs a session of its own).
    let concurrently: Bool
    let metrics: MetricNames
    let logger: Logger
    let signals: WorkerTestSignals

    /// Runs once; false when the upkeep failed (logged), so that the schedule tries again soon.
    func run(_ connections: PQConnectionPool) async -> Bool {
        do {
            let report = try await connections.withConnection { connection in
                try await HistoryPartitions(connection, schema: schema).upkeep(
                    length: configuration.partitionLength, ahead: configuration.ahead,
                    retention: configuration.retention, concurrently: concurrently)
            }
            for name in report.created {
                logger.info("created a history partition", metadata: ["partition": "\(name)"])
                Counter(label: metrics.historyPartitionsCreated, dimensions: [("table", Self.table(of: name))])
                    .increment()
            }
            for name in report.dropped {
                logger.info("dropped a history partition past retention", metadata: ["partition": "\(name)"])
                Counter(label: metrics.historyPartitionsDropped, dimensions: [("table", Self.table(of: name))])
                    .increment()
            }
            Gauge(label: metrics.historyFuturePartitions).record(report.fewestFuturePartitions)
            signals.historyKept.signal(report)
            return true
        } catch {
            logger.warning("could not keep the history partitions", metadata: ["error": "\(error)"])
            // The gauge must not keep the last good count while the upkeep fails: the alert on it
            // is what says that partitions are running out.
            if let fewest = try? await connections.withConnection({ connection in
                try await HistoryPartitions(connection, schema: schema).fewestFuturePartitions()
            }) {
                Gauge(label: metrics.historyFuturePartitions).record(fewest)
            }
            return false
        }
    }

    /// Runs at once, then every interval, until the task is cancelled; a failed run is tried
    /// again after a minute (or the interval, when shorter) instead of a whole interval later.
    func schedule(_ connections: PQConnectionPool) async {
        while !Task.isCancelled {
            let kept = await run(connections)
            try? await Task.sleep(for: kept ? configuration.interval : min(configuration.interval, .seconds(60)))
        }
    }

    /// `schema.table_p20261206` → `table`.
    static func table(of partition: String) -> String {
        let name = partition.split(separator: ".").last.map(String.init) ?? partition
        if name.hasSuffix("_legacy") { return String(name.dropLast(7)) }
        guard let range = name.range(of: "_p", options: .backwards) else { return name }
        return String(name[..<range.lowerBound])
    }
}
