import Foundation
import LibPQ
import Logging
import Metrics
import ServiceLifecycle
import WebhookDelivery

extension QueueSampler {
    /// The endpoints whose circuits the last sample reported: troubled (not closed), and
    /// recovered (reported closed, 0, for one sample before their series are removed).
    struct ReportedCircuits {
        var troubled = Set<String>()
        var recovered = Set<String>()
    }

    /// Endpoints by circuit state, and the circuit of each endpoint that is not closed. The
    /// `endpoint` label is the OAuth client's id (no URL, so no credential or query can reach a
    /// label), and only troubled endpoints are listed, so the label set stays small; an endpoint
    /// that recovers is reported closed (0) for one sample, then its series are removed.
    func sampleEndpoints(_ last: ReportedCircuits) async throws -> ReportedCircuits {
        let rows = try await database.query(
            PQQuery(
                "sampleEndpoints",
                """
                SELECT substr(key, 8) AS client, state, consecutive_failures FROM webhook_worker.endpoints
                WHERE state <> 'closed' ORDER BY consecutive_failures DESC LIMIT 200
                """))
        var byState = ["closed": 0, "open": 0, "half_open": 0, "disabled": 0]
        var seen = Set<String>()
        for row in rows.rows {
            let client: String = try row.decode("client")
            let state: String = try row.decode("state")
            byState[state, default: 0] += 1
            seen.insert(client)
            Gauge(label: DeliveryMetricNames.worker.endpointCircuitState, dimensions: [("endpoint", client)])
                .record(Self.stateValue[state] ?? 0)
            Gauge(label: DeliveryMetricNames.worker.endpointConsecutiveFailures, dimensions: [("endpoint", client)])
                .record(try row.decode("consecutive_failures", as: Int.self))
        }
        let recovered = last.troubled.subtracting(seen)
        for client in recovered {
            Gauge(label: DeliveryMetricNames.worker.endpointCircuitState, dimensions: [("endpoint", client)]).record(0)
            Gauge(label: DeliveryMetricNames.worker.endpointConsecutiveFailures, dimensions: [("endpoint", client)])
                .record(0)
        }
        for client in last.recovered.subtracting(seen) {
            Gauge(label: DeliveryMetricNames.worker.endpointCircuitState, dimensions: [("endpoint", client)]).destroy()
            Gauge(label: DeliveryMetricNames.worker.endpointConsecutiveFailures, dimensions: [("endpoint", client)])
                .destroy()
        }
        for (state, count) in byState where state != "closed" {
            Gauge(label: DeliveryMetricNames.worker.endpoints, dimensions: [("state", state)]).record(count)
        }
        return ReportedCircuits(troubled: seen, recovered: recovered)
    }

    /// 0 closed, 1 half-open, 2 open, 3 disabled.
    static let stateValue = ["closed": 0, "half_open": 1, "open": 2, "disabled": 3]

    /// The most endpoints that carry load gauges at once.
    static let loadedEndpoints = 50

    /// The load of the busiest endpoints (``loadedEndpoints``, by deliveries in flight, then
    /// waiting, then paused): each one's limit, in flight, waiting and throttled time, labelled
    /// with the OAuth client's id. An endpoint that leaves the busiest has its series removed, so
    /// the exporter never holds more than ``loadedEndpoints`` of each.
    func sampleEndpointLoad(reported: Set<String>) async throws -> Set<String> {
        let rows = try await database.query(
            PQQuery(
                "sampleEndpointLoad",
                """
                SELECT substr(s.concurrency_key, 8) AS client, \(EndpointLoad.columns)
                FROM webhook_worker.concurrency_key_status s
                LEFT JOIN webhook_worker.endpoints e ON e.key = s.concurrency_key
                WHERE s.kind = 'webhook.deliver' AND s.concurrency_key LIKE 'client:%'
                  AND (s.running > 0 OR s.waiting > 0 OR e.paused_until > now())
                ORDER BY s.running DESC, s.waiting DESC, s.concurrency_key
                LIMIT $1
                """), [Self.loadedEndpoints])
        let names = DeliveryMetricNames.worker
        var seen = Set<String>()
        for row in rows.rows {
            let client: String = try row.decode("client")
            let load = try EndpointLoad(row)
            let endpoint = [("endpoint", client)]
            seen.insert(client)
            Gauge(label: names.endpointLimit, dimensions: endpoint).record(load.limit ?? endpointConcurrency)
            Gauge(label: names.endpointInFlight, dimensions: endpoint).record(load.inFlight)
            Gauge(label: names.endpointWaiting, dimensions: endpoint).record(load.waiting)
            Gauge(label: names.endpointThrottledSeconds, dimensions: endpoint).record(load.throttledSeconds)
            Gauge(label: names.endpointPaused, dimensions: endpoint).record(load.pausedUntil == nil ? 0 : 1)
        }
        for client in reported.subtracting(seen) {
            for label in [
                names.endpointLimit, names.endpointInFlight, names.endpointWaiting, names.endpointThrottledSeconds,
                names.endpointPaused,
            ] {
                Gauge(label: label, dimensions: [("endpoint", client)]).destroy()
            }
        }
        return seen
    }
}

/// Samples queue depth and the oldest waiting job into gauges every `interval`.
///
/// These describe the whole queue, not this replica: every replica exports the same values, so
/// dashboards read them with `max()` across replicas (a `sum()` would multiply them).
struct QueueSampler: Service {
    let database: PQConnectionPool
    let kinds: Set<String>
    let interval: Duration
    /// The kind's limit per endpoint (`--endpoint-concurrency`): the one an endpoint without a
    /// limit of its own runs under.
    let endpointConcurrency: Int
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var reported = Set<[String]>()
            var reportedEndpoints = ReportedCircuits()
            var reportedLoad = Set<String>()
            while !Task.isCancelled {
                do {
                    let rows = try await database.query(
                        PQQuery(
                            "sampleQueue",
                            """
                            SELECT kind, state, jobs, coalesce(extract(epoch FROM oldest_age), 0)::float8 AS oldest
                            FROM webhook_worker.queue_depth
                            """))
                    var depth: [[String]: Int] = [:]
                    var oldest: [String: Double] = [:]
                    for row in rows.rows {
                        // Kinds this replica does not know are folded into "other" (their counts
                        // summed): label values stay bounded.
                        let kind = try row.decode("kind", as: String.self)
                        let label = kinds.contains(kind) ? kind : "other"
                        let state: String = try row.decode("state")
                        depth[[label, state], default: 0] += try row.decode("jobs", as: Int.self)
                        if state == "available" { oldest[label] = max(oldest[label] ?? 0, try row.decode("oldest")) }
                    }
                    for (labels, jobs) in depth {
                        Gauge(
                            label: DeliveryMetricNames.worker.queueDepth,
                            dimensions: [("kind", labels[0]), ("state", labels[1])]
                        )
                        .record(jobs)
                    }
                    let seen = Set(depth.keys)
                    for gone in reported.subtracting(seen) {
                        Gauge(
                            label: DeliveryMetricNames.worker.queueDepth,
                            dimensions: [("kind", gone[0]), ("state", gone[1])]
                        )
                        .record(0)
                    }
                    reported = seen
                    for kind in kinds.union(["other"]) {
                        Gauge(label: DeliveryMetricNames.worker.queueOldestAge, dimensions: [("kind", kind)]).record(
                            oldest[kind] ?? 0)
                    }
                    reportedEndpoints = try await sampleEndpoints(reportedEndpoints)
                    reportedLoad = try await sampleEndpointLoad(reported: reportedLoad)
                } catch {
                    logger.debug("could not sample the queue", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}
