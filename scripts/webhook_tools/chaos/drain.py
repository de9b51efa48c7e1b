"""The end of the run: waiting for the queue to drain, the operator's step for the deliveries
held by open circuits, and the final graceful stop."""

import json
import signal
import subprocess
import time

from ..core import RunError, log
from ..postgres import psql_json, psql_lines
from . import cluster, replicas
from .settings import GRACEFUL_EXIT_LIMIT, stamp


def end_held_deliveries(chaos):
    """The operator's step once only deliveries held by the open circuits of the endpoints
    that never succeed are left: those of the hanging endpoint are cancelled (webhook.deliver
    paused meanwhile, so that no attempt is in flight and none is snoozed again after the
    cancel), those of the always-500 endpoint end in the dead letters by disabling it."""
    hang, fail = chaos.client_of["hang"], chaos.client_of["fail"]
    op = chaos.operator = {"t": time.time(), "held": {}, "cancelled": None, "cancel_output": None,
                          "disabled": None, "paused_seconds": None}
    for r in psql_json(chaos.url, """
            SELECT d.oauth_client_id AS client, count(*) AS n, min(j.attempt) AS min_attempt,
                   max(j.attempt) AS max_attempt,
                   count(*) FILTER (WHERE j.last_error LIKE 'waiting:%') AS waiting
            FROM webhook_worker.jobs j
            JOIN webhook_worker.webhook_deliveries d ON d.delivery_id::text = j.payload ->> 'delivery_id'
            WHERE j.kind = 'webhook.deliver' GROUP BY 1"""):
        op["held"][r["client"]] = r
    held = {c: op["held"].get(c, {}).get("n", 0) for c in (hang, fail)}
    log(f"{stamp()} only deliveries held by open circuits are left ({hang} {held[hang]}, {fail} {held[fail]}): "
        f"the operator cancels the first, disables the second")
    if held[hang]:
        cluster.cli(chaos, "jobs", "pause", "webhook.deliver")
        paused = time.time()
        try:
            deadline = time.monotonic() + 20
            while int(psql_lines(chaos.url, "SELECT count(*) FROM webhook_worker.jobs "
                                     "WHERE kind = 'webhook.deliver' AND state = 'running'")[0]) > 0:
                if time.monotonic() > deadline:
                    raise RunError("deliveries still running 20s after pausing webhook.deliver")
                replicas.manage(chaos)
                time.sleep(0.05)
            output = cluster.cli(chaos, "deliveries", "cancel", "--client", hang, "--json")
            op["cancel_output"] = output
            op["cancelled"] = json.loads(output)
        finally:
            cluster.cli(chaos, "jobs", "resume", "webhook.deliver")
            op["paused_seconds"] = time.time() - paused
        log(f"{stamp()} deliveries cancel --client {hang}: {op['cancel_output']} "
            f"(webhook.deliver paused {op['paused_seconds']:.1f}s)")
    if held[fail]:
        cluster.cli(chaos, "endpoints", "disable", fail)
        op["disabled"] = fail
        log(f"{stamp()} endpoints disable {fail}")


def jobs_by_endpoint(chaos):
    """The deliveries' jobs left per endpoint, named by behaviour, with the endpoint's adaptive
    limit and circuit: a slow trickle and a stuck key look different here."""
    behaviour = {"client:" + cid: b for cid, b in chaos.client_behaviour.items()}
    rows = psql_json(chaos.url, """
        SELECT j.concurrency_key AS key, count(*) AS n,
               (SELECT applied FROM webhook_worker.endpoint_concurrency c WHERE c.key = j.concurrency_key) AS lim,
               (SELECT state FROM webhook_worker.endpoints e WHERE e.key = j.concurrency_key) AS circuit
        FROM webhook_worker.jobs j WHERE j.kind = 'webhook.deliver' GROUP BY 1 ORDER BY 2 DESC""")
    return ", ".join(f"{behaviour.get(r['key'], r['key'])} {r['n']} (limit {r['lim'] or '-'}, "
                     f"{r['circuit'] or 'closed'})" for r in rows) or "none"


def drain(chaos):
    """Every replica back up, then wait until the queue is empty and nothing is pending. When
    all that is left is deliveries held by the open circuits of the endpoints that never
    succeed, the operator ends those (end_held_deliveries) and the drain goes on."""
    started = time.time()
    deadline = time.monotonic() + chaos.drain_timeout
    for replica in chaos.replicas:
        if replica.state in ("down", "killed"):
            replica.restart_at = time.time()
    last_report = 0.0
    chaos.operator = None
    while True:
        replicas.manage(chaos)
        if all(r.state == "running" for r in chaos.replicas):
            q = cluster.queue_state(chaos)
            if q["jobs"] == 0 and q["pending"] == 0:
                chaos.drain_seconds = time.time() - started
                log(f"{stamp()} drained in {chaos.drain_seconds:.1f}s")
                return True
            if q["unsettled"] == 0 and chaos.operator is None:
                chaos.sampler.finish()  # what follows is the operator's, not the run's
                end_held_deliveries(chaos)
                continue
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                log(f"{stamp()} draining: {q['jobs']} job(s) in the queue ({q['running']} running, {q['held']} held "
                    f"by open circuits), {q['pending']} pending deliveries; by endpoint: {jobs_by_endpoint(chaos)}")
        if time.monotonic() > deadline:
            chaos.drain_seconds = None
            log(f"{stamp()} the queue did not drain within {chaos.drain_timeout}s")
            return False
        time.sleep(0.5)


def stop_replicas(chaos):
    for replica in chaos.replicas:
        if replica.alive():
            replica.peak_rss_kib()
    for replica in chaos.replicas:
        if replica.alive():
            replica.process.send_signal(signal.SIGTERM)
            replica.term_sent_at = time.time()
    chaos.final_exits = {}
    for replica in chaos.replicas:
        if replica.process is None or replica.state != "running":
            continue
        try:
            replica.process.wait(timeout=max(0.1, replica.term_sent_at + GRACEFUL_EXIT_LIMIT - time.time()))
            chaos.final_exits[replica.worker_id] = (replica.process.returncode,
                                                   round(time.time() - replica.term_sent_at, 2))
        except subprocess.TimeoutExpired:
            replica.process.kill()
            replica.process.wait(timeout=10)
            chaos.final_exits[replica.worker_id] = ("hung", None)
        replica.state = "down"
        status = chaos.final_exits[replica.worker_id][0]
        if status != 0:
            chaos.problems["graceful stops exit 0"].append(f"{replica.worker_id} exited {status} at the final SIGTERM")
