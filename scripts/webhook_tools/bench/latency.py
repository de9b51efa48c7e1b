"""2 and 4: pick-up latency, idle and under delivery load."""

import time

from ..core import RunError, log
from . import delivery
from .db import EventLoad, psql
from .figures import distribution
from .receivers import Nginx
from .settings import HTTP_ARGS, LOAD_CLIENTS, LOAD_KEPT_UP_SECONDS, LOAD_PROBE_GAP_MS, PICKUP_DEFINITION, TAG
from .workers import stop_workers, wait_until


def insert_probes(bench, count, gap_ms, label):
    """`count` no-op jobs inserted one at a time, `gap_ms` apart, from one psql session;
    returns {job id: created_at (the insert's transaction start, Unix seconds)}."""
    gap = gap_ms / 1000
    script = "".join(
        f"{TAG} INSERT INTO webhook_worker.jobs (kind, payload) VALUES ('noop', '{{\"{label}\": {i}}}') "
        f"RETURNING id, extract(epoch FROM created_at);\n"
        + (f"{TAG} SELECT pg_sleep({gap}) \\g /dev/null\n" if gap > 0 else "")
        for i in range(count))
    return {int(i): float(t) for i, t in psql(bench.url, script, bench.timeout + count * gap)}


def pickup_times(bench, created):
    """Pick-up (insert -> claim) and insert -> finished, in ms, of the probe jobs in `created`
    that succeeded: job_attempts.started_at and finished_at - jobs.created_at, database clock."""
    pickup, done = [], []
    for job_id, started, finished in bench.q("""
            SELECT job_id, extract(epoch FROM started_at), extract(epoch FROM finished_at)
            FROM webhook_worker.job_attempts WHERE kind = 'noop' AND outcome = 'succeeded'"""):
        t0 = created.get(int(job_id))
        if t0 is not None:
            pickup.append((float(started) - t0) * 1000)
            done.append((float(finished) - t0) * 1000)
    return pickup, done


def latency(bench):
    phase = "pick-up latency"
    bench.q("TRUNCATE webhook_worker.job_attempts")
    bench.q("TRUNCATE webhook_worker.jobs")
    workers = bench.start_workers(1, "latency")
    try:
        bench.warm_up(workers)
        log(f"{phase}: inserting {bench.probes} jobs one at a time, {bench.probe_gap_ms} ms apart")
        created = insert_probes(bench, bench.probes, bench.probe_gap_ms, "probe")
        wait_until(f"the probe jobs to finish ({phase})", lambda: bench.queue_depth() == 0, bench.timeout, workers)
    finally:
        stop_workers(workers)
    pickup, done = pickup_times(bench, created)
    result = {
        "probes": bench.probes,
        "gap_ms": bench.probe_gap_ms,
        "measured": len(pickup),
        "definition": PICKUP_DEFINITION,
        "pickup_ms": distribution(pickup, 2),
        "insert_to_finished_ms": distribution(done, 2),
        "peak_rss_mib": workers[0].summary()["peak_rss_mib"],
        "worker_processes": [w.summary() for w in workers],
    }
    if len(pickup) != bench.probes:
        bench.problems.append(f"{phase}: {len(pickup)} of {bench.probes} probe jobs succeeded")
    bench.check_workers(phase, workers)
    log(f"{phase}: p50 {result['pickup_ms']['p50']} ms, p99 {result['pickup_ms']['p99']} ms")
    return result


def latency_under_load(bench):
    phase = "latency under load"
    receiver = Nginx(bench.logdir)
    try:
        return _latency_under_load(bench, phase, receiver)
    finally:
        receiver.close()


def _latency_under_load(bench, phase, receiver):
    """One worker, default settings, LOAD_CLIENTS OAuth clients on nginx; a thread inserts
    BENCH_LOAD_RATE events per second while no-op probes go in one at a time LOAD_PROBE_GAP_MS
    apart for about BENCH_LOAD_SECONDS."""
    clients, rate = LOAD_CLIENTS, bench.load_rate
    probes = max(1, bench.load_seconds * 1000 // LOAD_PROBE_GAP_MS)
    delivery.seed_app(bench, receiver.port, clients)
    workers = bench.start_workers(1, "load", HTTP_ARGS)
    load = EventLoad(bench.url, rate, bench.accounts)
    try:
        bench.warm_up(workers)
        log(f"{phase}: {rate} events/s ({rate * clients} deliveries/s offered, nginx on port {receiver.port}); "
            f"after 1 s, {probes} no-op jobs {LOAD_PROBE_GAP_MS} ms apart")
        load.start()
        time.sleep(1.0)  # the load reaches its pace before the probes start
        meter = bench.cpu_meter(workers, receiver).start()
        created = insert_probes(bench, probes, LOAD_PROBE_GAP_MS, "load_probe")
        cpu = meter.stop()
        # The backlog the worker had at the end of the window, the load still on.
        queued = {kind: int(n) for kind, n in bench.q(
            "SELECT kind, count(*) FROM webhook_worker.jobs GROUP BY 1")}
        pending = int(bench.q(
            "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'pending'")[0][0])
        load.finish()
        wait_until(f"every delivery and probe ({phase})", lambda: bench.queue_depth() == 0, bench.timeout, workers)
    finally:
        load.finish()
        stop_workers(workers)
        receiver.close()
    if load.error:
        raise RunError(f"{phase}: inserting the load failed: {load.error}")
    window = (min(created.values()), max(created.values()))
    in_window = bench.q(f"""
        SELECT count(*) FILTER (WHERE delivered_at >= to_timestamp({window[0]})
                                  AND delivered_at < to_timestamp({window[1]})),
               count(*) FILTER (WHERE created_at >= to_timestamp({window[0]})
                                  AND created_at < to_timestamp({window[1]}))
        FROM webhook_worker.webhook_deliveries""")[0]
    seconds = window[1] - window[0]
    events_inserted = load.sent
    outcome = delivery.delivery_outcome(bench, phase, receiver, events_inserted * clients)
    outcome.pop("arrivals")
    pickup, done = pickup_times(bench, created)
    result = {
        "events_per_second_offered": rate,
        "clients": clients,
        "deliveries_per_second_offered": rate * clients,
        "probes": probes,
        "probe_gap_ms": LOAD_PROBE_GAP_MS,
        "measured": len(pickup),
        "window_seconds": round(seconds, 3),
        "definition": PICKUP_DEFINITION + "; the window runs from the first probe's insert to the last; "
                      "delivered/s = deliveries with delivered_at in the window / its length",
        "pickup_ms": distribution(pickup, 2),
        "insert_to_finished_ms": distribution(done, 2),
        "deliveries_per_second_achieved": round(int(in_window[0]) / seconds, 1) if seconds > 0 else None,
        "deliveries_created_per_second": round(int(in_window[1]) / seconds, 1) if seconds > 0 else None,
        "queued_at_window_end": queued,
        "pending_deliveries_at_window_end": pending,
        "events_inserted": events_inserted,
        **outcome,
        "cpu": cpu,
        "peak_rss_mib": workers[0].summary()["peak_rss_mib"],
        "worker_processes": [w.summary() for w in workers],
    }
    result["kept_up"] = sum(n for kind, n in queued.items() if kind != "noop") <= rate * clients * LOAD_KEPT_UP_SECONDS
    if len(pickup) != probes:
        bench.problems.append(f"{phase}: {len(pickup)} of {probes} probe jobs succeeded")
    bench.check_workers(phase, workers)
    log(f"{phase}: pick-up p50 {result['pickup_ms']['p50']} ms, p99 {result['pickup_ms']['p99']} ms; "
        f"{result['deliveries_per_second_achieved']} deliveries/s; queued at the end {queued}")
    return result
