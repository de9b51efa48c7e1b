"""3 and 3b: delivery throughput, directly and through PgBouncer."""

import os

from ..core import log
from ..postgres import PgBouncer, load_app_tables
from . import burndown, statements
from .db import events_sql, psql
from .figures import cpu_per_delivery, distribution, r
from .receivers import Nginx, pgbouncer_version
from .settings import HTTP_ARGS, PGBOUNCER_POOL_SIZE, SECRET
from .workers import stop_workers, wait_until

# The deliveries of this run: the history phases' rows are two days old or more.
RECENT = "> now() - interval '1 day'"


def seed_app(bench, port, clients, keep_history=False):
    """The web app's tables with BENCH_ACCOUNTS users, each with one Linear account, and
    `clients` OAuth clients every user granted, their webhooks pointing at the receiver on `port`. The queue is
    emptied, and the history too unless `keep_history` (then only this run's is deleted)."""
    load_app_tables(bench.url)
    m, k = bench.accounts, clients
    history = ("""
        DELETE FROM webhook_worker.delivery_attempts WHERE attempted_at {RECENT};
        DELETE FROM webhook_worker.webhook_deliveries WHERE created_at {RECENT};
        DELETE FROM webhook_worker.job_attempts WHERE finished_at {RECENT};
        TRUNCATE webhook_worker.jobs, webhook_worker.dead_letter_jobs;""" if keep_history else """
        TRUNCATE webhook_worker.delivery_attempts, webhook_worker.webhook_deliveries, webhook_worker.jobs,
                 webhook_worker.job_attempts, webhook_worker.dead_letter_jobs;""").replace("{RECENT}", RECENT)
    psql(bench.url, f"""
        TRUNCATE "OAuthIntegrationGrant", "OAuthClient", "IntegrationAccount", "IntegrationDefinitionV2", "User"
            CASCADE;
        INSERT INTO "User" (id, email, name)
        SELECT 'bench-user-' || g, 'bench-' || g || '@example.com', 'Bench ' || g FROM generate_series(1, {m}) g;
        INSERT INTO "IntegrationDefinitionV2" (id, name, slug, icon)
        VALUES ('bench-def-linear', 'Linear', 'linear', 'https://example.com/linear-icon.png');
        INSERT INTO "IntegrationAccount" (id, "accountId", "integrationDefinitionId", "integratedById")
        SELECT 'bench-acct-' || g, 'lin_ext_' || g, 'bench-def-linear', 'bench-user-' || g
        FROM generate_series(1, {m}) g;
        INSERT INTO "OAuthClient" (id, "clientId", name, "allowedScopes", "webhookUrl", "webhookSecret")
        SELECT 'bench-client-' || g, 'bench-client-id-' || g, 'Bench app ' || g, 'profile,email,openid,integration',
               'http://127.0.0.1:{port}/hook/' || g, '{SECRET}'
        FROM generate_series(1, {k}) g;
        INSERT INTO "OAuthIntegrationGrant" (id, "clientId", "userId", "integrationAccountId")
        SELECT 'bench-grant-' || c || '-' || a, 'bench-client-' || c, 'bench-user-' || a, 'bench-acct-' || a
        FROM generate_series(1, {k}) c, generate_series(1, {m}) a;
        {history}
        ANALYZE;
        """)


def delivery(bench, clients, pooler=None, phase=None, keep_history=False, events=None):
    """`events` integration.connected events (BENCH_EVENTS by default), each to `clients` OAuth clients."""
    phase = phase or f"delivery, {clients} clients"
    receiver = Nginx(bench.logdir)
    try:
        return _delivery(bench, phase, clients, receiver, pooler, keep_history, events or bench.events)
    finally:
        receiver.close()


def _delivery(bench, phase, clients, receiver, pooler, keep_history, events):
    seed_app(bench, receiver.port, clients, keep_history)
    expected = events * clients
    workers = bench.start_workers(1, f"delivery{clients}" + ("-pgbouncer" if pooler else ""), HTTP_ARGS, pooler)
    try:
        bench.warm_up(workers)
        log(f"{phase}: inserting {events} integration.connected jobs ({clients} recipients each, "
            f"nginx on port {receiver.port})")
        statements.reset(bench)
        meter = bench.cpu_meter(workers, receiver, pooler).start()
        created = {int(i): float(t) for i, t in bench.q(events_sql(0, events, bench.accounts), 300)}
        # Done when nothing is left to run: the events fanned out (their job stays queued until
        # then) and every delivery job finished, delivered or dead-lettered; retries keep it waiting.
        wait_until(f"every delivery ({phase})", lambda: bench.queue_depth() == 0, bench.timeout, workers,
                   interval=0.05)
        cpu = meter.stop()
    finally:
        stop_workers(workers)
        receiver.close()  # writes out the access log
    outcome = delivery_outcome(bench, phase, receiver, expected)
    delivered = outcome["deliveries_by_status"].get("delivered", 0)
    receipt, db_latency, last_delivered = [], [], None
    arrivals = outcome.pop("arrivals")
    for delivery_id, source_job_id, delivered_at in bench.q("""
            SELECT delivery_id, source_job_id, extract(epoch FROM delivered_at)
            FROM webhook_worker.webhook_deliveries WHERE status = 'delivered' AND created_at """ + RECENT):
        t0 = created.get(int(source_job_id))
        if t0 is None:
            continue
        delivered_at = float(delivered_at)
        last_delivered = delivered_at if last_delivered is None else max(last_delivered, delivered_at)
        db_latency.append((delivered_at - t0) * 1000)
        arrived = arrivals.get(delivery_id)
        if arrived is not None:
            receipt.append((arrived - t0) * 1000)
    seconds = (last_delivered - min(created.values())) if last_delivered else None
    result = {
        "events": events,
        "clients": clients,
        "accounts": bench.accounts,
        **outcome,
        "seconds": r(seconds, 3),
        "deliveries_per_second": round(delivered / seconds, 1) if seconds else None,
        "definition": "all events inserted in one statement; rate = delivered / (max(delivered_at) - "
                      "min(event jobs' created_at)); latency = nginx's arrival ($msec, 1 ms resolution) - "
                      "the event job's created_at, so it includes the queueing of the whole burst",
        "insert_to_receipt_ms": distribution(receipt),
        "insert_to_delivered_at_ms": distribution(db_latency),
        "cpu": cpu,
        "receiver_cpu_percent_of_one_core": cpu.get("nginx", {}).get("percent_of_one_core"),
        "cpu_per_delivery": cpu_per_delivery(cpu, delivered, os.cpu_count()),
        "database_time": statements.profile(bench, phase, delivered, "delivery"),
        "peak_rss_mib": workers[0].summary()["peak_rss_mib"],
        "worker_processes": [w.summary() for w in workers],
    }
    bench.check_workers(phase, workers)
    log(f"{phase}: {delivered} deliveries in {seconds or 0:.2f}s = {result['deliveries_per_second']}/s; CPU "
        + ", ".join(f"{name} {v['percent_of_one_core']} %" for name, v in cpu.items() if isinstance(v, dict)))
    return result


def delivery_outcome(bench, phase, receiver, expected):
    """What the database recorded of the deliveries (`expected` of them) against what
    reached nginx (closed, so its log is complete); adds a problem where they disagree."""
    statuses = {s: int(n) for s, n in bench.q(
        f"SELECT status, count(*) FROM webhook_worker.webhook_deliveries WHERE created_at {RECENT} GROUP BY 1")}
    http = bench.q("""
        SELECT count(*), count(*) FILTER (WHERE http_status BETWEEN 200 AND 299)
        FROM webhook_worker.delivery_attempts WHERE attempted_at """ + RECENT)[0]
    job_outcomes = {f"{kd}/{o}": int(n) for kd, o, n in bench.q(
        "SELECT kind, outcome, count(*) FROM webhook_worker.job_attempts "
        f"WHERE kind <> 'noop' AND finished_at {RECENT} GROUP BY 1, 2")}
    dead = bench.dead_letters()
    arrivals, requests, connections, other = receiver.tally()
    delivered = statuses.get("delivered", 0)
    if delivered != expected:
        bench.problems.append(f"{phase}: {delivered} of {expected} deliveries delivered {statuses}, "
                              f"{dead} dead letters")
    if requests != len(arrivals) or int(http[0]) != delivered or other:
        bench.problems.append(f"{phase}: {requests} requests reached nginx ({other} not answered 204) for "
                             f"{len(arrivals)} deliveries, {http[0]} HTTP attempts recorded ({http[1]} 2xx)")
    if len(arrivals) != delivered:
        bench.problems.append(f"{phase}: nginx saw {len(arrivals)} deliveries, the database says {delivered} delivered")
    return {
        "deliveries_expected": expected,
        "deliveries_by_status": statuses,
        "http_attempts": int(http[0]),
        "http_2xx": int(http[1]),
        "receiver": "nginx, return 204, keep-alive, 1 worker process",
        "receiver_requests": requests,
        "receiver_unique_deliveries": len(arrivals),
        "receiver_tcp_connections": connections,
        "receiver_answers_not_204": other,
        "job_attempt_outcomes": job_outcomes,
        "dead_letters": dead,
        "arrivals": arrivals,
    }


def pgbouncer(bench):
    """The 1-worker burn-down and the delivery phase again, the worker's statements through a
    PgBouncer in transaction mode (scripts/pgbouncer, in front of the bench database) with
    --prepared-statements off and LISTEN straight to PostgreSQL; their rates over the direct
    ones measured earlier in this run."""
    pooler = PgBouncer(bench.url, PGBOUNCER_POOL_SIZE, "bench")
    log(f"pgbouncer: PgBouncer (transaction mode, default_pool_size {PGBOUNCER_POOL_SIZE}) at {pooler.url}")
    try:
        bench.phase("pgbouncer_burn_down_1_worker",
                   lambda: burndown.burn_down(bench, 1, bench.jobs, "pgbouncer: burn-down, 1 worker", "pgb-burndown1",
                                              pooler))
        bench.phase("pgbouncer_delivery",
                   lambda: delivery(bench, bench.clients, pooler, f"pgbouncer: delivery, {bench.clients} clients"))
    finally:
        pooler.close()
    res = bench.results

    def over(key, direct_key, *path):
        value, direct = res.get(key, {}), res.get(direct_key, {})
        for p in path:
            value = value.get(p) if isinstance(value, dict) else None
            direct = direct.get(p) if isinstance(direct, dict) else None
        return {"pgbouncer": value, "direct": direct,
                "ratio": round(value / direct, 2) if value and direct else None}

    return {
        "pooler": {"version": pgbouncer_version(), "pool_mode": "transaction", "default_pool_size": PGBOUNCER_POOL_SIZE,
                   "worker_args": ["--database-url <pgbouncer>", "--prepared-statements off",
                                   "--listen-database-url <postgresql>"]},
        "jobs_per_second": over("pgbouncer_burn_down_1_worker", "burn_down_1_worker", "jobs_per_second"),
        "deliveries_per_second": over("pgbouncer_delivery", "delivery", "deliveries_per_second"),
        "db_ms_per_job": over("pgbouncer_burn_down_1_worker", "burn_down_1_worker", "database_time", "ms_per_job"),
        "db_ms_per_delivery": over("pgbouncer_delivery", "delivery", "database_time", "ms_per_delivery"),
    }
