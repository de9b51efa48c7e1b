import ArgumentParser
import Foundation
import JobQueue
import LibPQ
import WebhookDelivery
import WebhookWorkerSchema

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Queue depth, oldest waiting job, replicas, throughput and dead letters at a glance.")

    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        let (queue, endpointRecords) = try await withOperatorConnection(database) { connection in
            (
                try await QueueStatistics.read(connection, schema: WebhookWorkerSchema.queue),
                try await Endpoints(connection).notClosed()
            )
        }
        let depth = queue.depth.map(\.fields)
        let waiting = queue.waiting.map(\.fields)
        let replicas = queue.replicas.map(\.fields)
        let throughput = queue.throughput.map(\.fields)
        let dead = queue.deadLetters.map(\.fields)
        let endpoints = endpointRecords.map(\.fields)
        let paused = queue.pausedKinds.map(\.fields)

        let output = Output(json: json)
        if json {
            let sections: [String: [Fields]] = [
                "queue": depth, "oldest_waiting": waiting, "replicas": replicas, "throughput": throughput,
                "dead_letters": dead, "endpoints_not_closed": endpoints, "paused_kinds": paused,
            ]
            output.printJSON(sections.mapValues { $0.map(Output.present) })
            return
        }
        print("queue depth")
        output.list(depth, columns: ["kind", "state", "jobs", "oldest_age_seconds"])
        print("\noldest runnable job waiting")
        output.list(waiting, columns: ["kind", "waiting", "oldest_wait_seconds"])
        print("\nreplicas holding leases (\(replicas.count))")
        output.list(replicas, columns: ["worker_id", "running", "next_lease_expiry"])
        print("\nattempts finished (last minute / last hour)")
        output.list(throughput, columns: ["kind", "succeeded_1m", "failed_1m", "succeeded_1h", "failed_1h"])
        print("\ndead letters not requeued")
        output.list(dead, columns: ["kind", "reason", "dead_letters", "last_dead_at"])
        print("\nendpoints not sending normally (open, half_open, disabled)")
        output.list(
            endpoints, columns: ["oauth_client_id", "state", "consecutive_failures", "next_probe_at", "last_error"])
        print("\npaused kinds")
        output.list(paused, columns: ["kind", "paused_at", "paused_by"])
    }
}
