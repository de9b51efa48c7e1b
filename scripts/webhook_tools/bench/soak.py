"""Soak mode: a steady load, the worker's resources over time."""

import datetime
import json
import os
import shutil
import time

from ..core import ROOT, RunError, env_int, log
from ..postgres import drop_database
from ..processes import proc_status_kib
from . import delivery
from .db import EventLoad
from .receivers import Nginx
from .settings import BENCH_DB, HTTP_ARGS
from .workers import stop_workers

# The hot queue tables' sizes (with indexes and TOAST, KiB) and jobs' dead tuples.
QUEUE_TABLES = """
    SELECT pg_total_relation_size('webhook_worker.jobs') / 1024,
           (pg_total_relation_size('webhook_worker.concurrency_keys')
            + pg_total_relation_size('webhook_worker.concurrency_key_wakeups')) / 1024,
           coalesce((SELECT n_dead_tup FROM pg_stat_user_tables
                     WHERE schemaname = 'webhook_worker' AND relname = 'jobs'), 0)"""


# The handlers' pool (8 by default) and the worker's own connections: LISTEN, claiming, lease
# upkeep, history upkeep and two recording outcomes.
MAX_DB_CONNECTIONS = 8 + 6
# A keep-alive connection to the receiver per job in flight (the default --concurrency, 128), the
# database's, and 32 for the binary, logs, the event loops' pipes and the HTTP server.
MAX_OPEN_FILES = 128 + MAX_DB_CONNECTIONS + 32


def soak(bench):
    """BENCH_SOAK_SECONDS of integration.connected events at BENCH_SOAK_RATE per second, each to
    BENCH_SOAK_CLIENTS OAuth clients on nginx; every 30 s the worker's memory, open files and
    sockets, the database connections of the worker, and the size of the hot queue tables (`jobs`
    and the claim's key tables, with their indexes and TOAST, in KiB; and `jobs`' dead tuples) are
    printed. Memory and connections must stay flat; the queue tables' sizes are printed for the
    eye (issue 23: they stay bounded at full rate when vacuum keeps up)."""
    seconds, rate = bench.soak_seconds, env_int("BENCH_SOAK_RATE", 20)
    clients = env_int("BENCH_SOAK_CLIENTS", 2)
    receiver = Nginx(bench.logdir)
    delivery.seed_app(bench, receiver.port, clients)
    workers = bench.start_workers(1, "soak", HTTP_ARGS)
    worker = workers[0]
    load = EventLoad(bench.url, rate, bench.accounts)
    samples = []
    log(f"soak: {seconds}s at {rate} events/s ({rate * clients} deliveries/s)")
    print(f"{'elapsed':>8} {'rss MiB':>8} {'fds':>5} {'sockets':>8} {'db conns':>9} {'queued':>7} {'delivered':>10} "
          f"{'jobs KiB':>9} {'keys KiB':>9} {'jobs dead':>9}", flush=True)
    started = time.monotonic()
    next_sample = started + 30
    load.start()
    try:
        while time.monotonic() - started < seconds:
            if load.error:
                raise RunError(f"soak: inserting events failed: {load.error}")
            if not worker.alive():
                raise RunError("soak: the worker died")
            if time.monotonic() >= next_sample:
                next_sample += 30
                fds = os.listdir(f"/proc/{worker.pid}/fd")
                sockets = sum(1 for fd in fds if os.readlink(f"/proc/{worker.pid}/fd/{fd}").startswith("socket:"))
                rss = (proc_status_kib(worker.pid, "VmRSS") or 0) / 1024
                conns = int(bench.q("SELECT count(*) FROM pg_stat_activity "
                                    "WHERE application_name LIKE 'webhook-worker%'")[0][0])
                queued = bench.queue_depth()
                delivered = int(bench.q("SELECT count(*) FROM webhook_worker.webhook_deliveries "
                                        "WHERE status = 'delivered'")[0][0])
                jobs_kib, keys_kib, jobs_dead = (int(v) for v in bench.q(QUEUE_TABLES)[0])
                sample = {"elapsed_s": round(time.monotonic() - started), "rss_mib": round(rss, 1), "fds": len(fds),
                          "sockets": sockets, "db_connections": conns, "queued": queued, "delivered": delivered,
                          "jobs_kib": jobs_kib, "key_tables_kib": keys_kib, "jobs_dead_tuples": jobs_dead}
                samples.append(sample)
                print(f"{sample['elapsed_s']:>8} {sample['rss_mib']:>8} {len(fds):>5} {sockets:>8} {conns:>9} "
                      f"{queued:>7} {delivered:>10} {jobs_kib:>9} {keys_kib:>9} {jobs_dead:>9}", flush=True)
            time.sleep(0.05)
    finally:
        load.finish()
        stop_workers(workers)
        receiver.close()
    result = {"seconds": seconds, "events_per_second": rate, "clients": clients, "events": load.sent,
              "samples": samples}
    if len(samples) >= 4:
        settled = samples[1:]  # the first half minute is warm-up: pools and caches fill
        growth = settled[-1]["rss_mib"] - settled[0]["rss_mib"]
        result["rss_growth_mib"] = round(growth, 1)
        result["fd_range"] = [min(s["fds"] for s in settled), max(s["fds"] for s in settled)]
        result["db_connection_range"] = [min(s["db_connections"] for s in settled),
                                         max(s["db_connections"] for s in settled)]
        if growth > max(8.0, 0.25 * settled[0]["rss_mib"]):
            bench.problems.append(f"soak: worker memory grew {growth:.1f} MiB after warm-up")
        # Pools grow lazily to their bounds (the handlers' 8 database connections by default and
        # the worker's own 6, docs/operations.md; keep-alive connections to the receiver up to the
        # concurrency); a leak goes past them.
        if result["fd_range"][1] > MAX_OPEN_FILES:
            bench.problems.append(f"soak: open files ranged {result['fd_range']}, past any pool's bound "
                                  f"({MAX_OPEN_FILES})")
        if result["db_connection_range"][1] > MAX_DB_CONNECTIONS:
            bench.problems.append(f"soak: database connections ranged {result['db_connection_range']}, "
                                  f"past 8 + 6 = {MAX_DB_CONNECTIONS}")
        result["jobs_kib_range"] = [min(s["jobs_kib"] for s in settled), max(s["jobs_kib"] for s in settled)]
        result["key_tables_kib_range"] = [min(s["key_tables_kib"] for s in settled),
                                          max(s["key_tables_kib"] for s in settled)]
        if settled[-1]["queued"] > rate * 10:
            bench.problems.append(f"soak: {settled[-1]['queued']} jobs queued at the end: not keeping up")
    return result


def summary(result):
    """The soak's one-line summary, from its result (any figure missing is printed as -)."""
    return (f"soak: {result.get('events', 0)} events; memory growth after warm-up "
            f"{result.get('rss_growth_mib', '-')} MiB; open files {result.get('fd_range', '-')}; "
            f"database connections {result.get('db_connection_range', '-')}; "
            f"jobs KiB {result.get('jobs_kib_range', '-')}; key tables KiB {result.get('key_tables_kib_range', '-')}")


def run_soak(bench):
    bench.results["environment"] = bench.environment()
    try:
        bench.setup()
        bench.phase("soak", lambda: soak(bench))
    finally:
        if bench.session:
            bench.session.close()
        if not bench.keep:
            drop_database(bench.server_url, BENCH_DB)
    print(summary(bench.results.get("soak", {})))
    os.makedirs(os.path.join(ROOT, ".bench"), exist_ok=True)
    utc = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(ROOT, ".bench", "soak-" + utc + ".json")
    with open(path, "w") as out:
        json.dump(bench.results, out, indent=2)
    print(f"results written to {path}")
    for problem in bench.problems:
        print(f"PROBLEM: {problem}")
    shutil.rmtree(bench.logdir, ignore_errors=True)
    return 1 if bench.problems else 0
