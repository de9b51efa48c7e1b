import Foundation
import Hummingbird
import JobQueue
import LibPQ
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// `/metrics` (Prometheus text format), `/healthz` (the process answers) and `/readyz` (the
/// database answers and the LISTEN connection is up) on `--http-port`, and the web console under
/// `/console` with `--console`.
enum OperationsServer {
    static func make(
        host: String, port: Int, registry: PrometheusCollectorRegistry, worker: JobWorker,
        database: PostgresConnectionPool, console: Console? = nil,
        logger: Logger
    ) -> some Service {
        let router = Router()
        if let console { ConsoleServer.register(console, on: router) }
        router.get("metrics") { _, _ -> Response in
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        router.get("healthz") { _, _ -> Response in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        router.get("readyz") { _, _ -> Response in
            let problems = await readinessProblems(worker: worker, database: database)
            return Response(
                status: problems.isEmpty ? .ok : .serviceUnavailable,
                body: .init(
                    byteBuffer: ByteBuffer(
                        string: (problems.isEmpty ? "ready" : problems.joined(separator: "; ")) + "\n")))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port)), logger: logger)
    }

    /// Why this replica should not get work now; empty when it is ready.
    static func readinessProblems(worker: JobWorker, database: PostgresConnectionPool) async -> [String] {
        var problems: [String] = []
        if worker.isStopping { problems.append("shutting down") }
        if !worker.isListening { problems.append("LISTEN connection down") }
        let reachable = await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await database.query(PostgresQuery("readinessPing", "SELECT 1 AS one"))) != nil }
            group.addTask {
                try? await Task.sleep(for: .seconds(2))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !reachable { problems.append("database unreachable") }
        return problems
    }
}

extension QueueSampler {
    /// Endpoints by circuit state, and the circuit of each endpoint that is not closed. The
    /// `endpoint` label is the OAuth client's id (no URL, so no credential or query can reach a
    /// label), and only troubled endpoints are listed, so the label set stays small; an endpoint
    /// that recovers is reported closed (0) once, then left out.
    func sampleEndpoints(reported: Set<String>) async throws -> Set<String> {
        let rows = try await database.query(
            PostgresQuery(
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
            Gauge(label: "webhook_worker_endpoint_circuit_state", dimensions: [("endpoint", client)])
                .record(Self.stateValue[state] ?? 0)
            Gauge(label: "webhook_worker_endpoint_consecutive_failures", dimensions: [("endpoint", client)])
                .record(try row.decode("consecutive_failures", as: Int.self))
        }
        for client in reported.subtracting(seen) {
            Gauge(label: "webhook_worker_endpoint_circuit_state", dimensions: [("endpoint", client)]).record(0)
            Gauge(label: "webhook_worker_endpoint_consecutive_failures", dimensions: [("endpoint", client)]).record(0)
        }
        for (state, count) in byState where state != "closed" {
            Gauge(label: "webhook_worker_endpoints", dimensions: [("state", state)]).record(count)
        }
        return seen
    }

    /// 0 closed, 1 half-open, 2 open, 3 disabled.
    static let stateValue = ["closed": 0, "half_open": 1, "open": 2, "disabled": 3]
}

/// Samples queue depth and the oldest waiting job into gauges every `interval`.
///
/// These describe the whole queue, not this replica: every replica exports the same values, so
/// dashboards read them with `max()` across replicas (a `sum()` would multiply them).
struct QueueSampler: Service {
    let database: PostgresConnectionPool
    let kinds: Set<String>
    let interval: Duration
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            var reported = Set<[String]>()
            var reportedEndpoints = Set<String>()
            while !Task.isCancelled {
                do {
                    let rows = try await database.query(
                        PostgresQuery(
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
                            label: "webhook_worker_queue_depth",
                            dimensions: [("kind", labels[0]), ("state", labels[1])]
                        )
                        .record(jobs)
                    }
                    let seen = Set(depth.keys)
                    for gone in reported.subtracting(seen) {
                        Gauge(label: "webhook_worker_queue_depth", dimensions: [("kind", gone[0]), ("state", gone[1])])
                            .record(0)
                    }
                    reported = seen
                    for kind in kinds.union(["other"]) {
                        Gauge(label: "webhook_worker_queue_oldest_age_seconds", dimensions: [("kind", kind)]).record(
                            oldest[kind] ?? 0)
                    }
                    reportedEndpoints = try await sampleEndpoints(reported: reportedEndpoints)
                } catch {
                    logger.debug("could not sample the queue", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: interval)
            }
        }
    }
}
