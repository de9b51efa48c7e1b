import Foundation
import Hummingbird
import JobQueue
import LibPQ
import Logging
import Prometheus
import ServiceLifecycle

/// `/metrics` (Prometheus text format), `/healthz` (the process answers) and `/readyz` (the
/// database answers and the LISTEN connection is up) on `--http-port`, and the web console under
/// `/console` with `--console`.
enum OperationsServer {
    static func make(
        host: String, port: Int, registry: PrometheusCollectorRegistry, worker: JobWorker,
        database: PQConnectionPool, console: Console? = nil,
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
    static func readinessProblems(worker: JobWorker, database: PQConnectionPool) async -> [String] {
        var problems: [String] = []
        if worker.isStopping { problems.append("shutting down") }
        if !worker.isListening { problems.append("LISTEN connection down") }
        let reachable = await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await database.query(PQQuery("readinessPing", "SELECT 1 AS one"))) != nil }
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
