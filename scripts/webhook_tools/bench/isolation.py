"""5: endpoint isolation, a hanging endpoint beside a healthy one."""

import time

from ..core import RunError, log, percentile
from ..postgres import load_app_tables
from ..sampler import EndpointSampler
from .db import psql
from .figures import r
from .receivers import HangingServer, Receiver
from .settings import (
    ISOLATION_BACKLOG,
    ISOLATION_EVENTS,
    ISOLATION_GAP_MS,
    ISOLATION_HANGING,
    ISOLATION_HEALTHY,
    ISOLATION_LIMIT,
    ISOLATION_REQUEST_TIMEOUT,
    ISOLATION_TARGET_MAX_MS,
    ISOLATION_TARGET_P50_MS,
    SECRET,
)
from .workers import stop_workers, wait_until


def isolation(bench):
    phase = "isolation"
    receiver = Receiver(bench.binary)
    hanging = HangingServer()
    try:
        return _isolation(bench, phase, receiver, hanging)
    finally:
        receiver.close()
        hanging.close()


def _isolation(bench, phase, receiver, hanging):
    """A hanging endpoint (one OAuth client whose webhookUrl accepts requests and never
    answers) with a backlog of ISOLATION_BACKLOG deliveries, and a healthy one (the fast
    receiver) getting ISOLATION_EVENTS new events ISOLATION_GAP_MS apart, on one worker with
    --request-timeout 2s and default settings otherwise (4 deliveries per endpoint at once,
    circuit open after 5 failures in a row, 30 s cool-down)."""
    backlog, events, gap = ISOLATION_BACKLOG, ISOLATION_EVENTS, ISOLATION_GAP_MS / 1000
    hang_key = f"client:{ISOLATION_HANGING}"
    load_app_tables(bench.url)
    psql(bench.url, f"""
        TRUNCATE "OAuthIntegrationGrant", "OAuthClient", "IntegrationAccount", "IntegrationDefinitionV2", "User"
            CASCADE;
        TRUNCATE webhook_worker.delivery_attempts, webhook_worker.webhook_deliveries, webhook_worker.jobs,
                 webhook_worker.job_attempts, webhook_worker.dead_letter_jobs, webhook_worker.endpoints,
                 webhook_worker.concurrency_keys, webhook_worker.concurrency_key_wakeups;
        INSERT INTO "User" (id, email, name) VALUES ('iso-user-hang', 'hang@example.com', 'Hang'),
                                                    ('iso-user-ok', 'ok@example.com', 'Ok');
        INSERT INTO "IntegrationDefinitionV2" (id, name, slug, icon)
        VALUES ('bench-def-linear', 'Linear', 'linear', 'https://example.com/linear-icon.png');
        INSERT INTO "IntegrationAccount" (id, "accountId", "integrationDefinitionId", "integratedById")
        VALUES ('iso-acct-hang', 'lin_ext_hang', 'bench-def-linear', 'iso-user-hang'),
               ('iso-acct-ok', 'lin_ext_ok', 'bench-def-linear', 'iso-user-ok');
        INSERT INTO "OAuthClient" (id, "clientId", name, "allowedScopes", "webhookUrl", "webhookSecret")
        VALUES ('{ISOLATION_HANGING}', 'iso-hanging-id', 'Hanging app', 'integration',
                'http://127.0.0.1:{hanging.port}/hook/hang', '{SECRET}'),
               ('{ISOLATION_HEALTHY}', 'iso-healthy-id', 'Healthy app', 'integration',
                'http://127.0.0.1:{receiver.port}/hook/ok', '{SECRET}');
        INSERT INTO "OAuthIntegrationGrant" (id, "clientId", "userId", "integrationAccountId")
        VALUES ('iso-grant-hang', '{ISOLATION_HANGING}', 'iso-user-hang', 'iso-acct-hang'),
               ('iso-grant-ok', '{ISOLATION_HEALTHY}', 'iso-user-ok', 'iso-acct-ok');
        ANALYZE;
        """)
    workers = bench.start_workers(1, "isolation", ["--allow-http", "--allow-private-networks",
                                                  "--request-timeout", ISOLATION_REQUEST_TIMEOUT])
    sampler = EndpointSampler(bench.url)
    try:
        bench.warm_up(workers)
        sampler.start()
        log(f"{phase}: {backlog} events for the hanging endpoint (port {hanging.port}); waiting for its "
            f"{backlog} deliveries and {ISOLATION_LIMIT} requests in flight")
        bench.q(f"""INSERT INTO webhook_worker.jobs (kind, payload)
                   SELECT 'integration.connected', jsonb_build_object(
                       'integration_account_id', 'iso-acct-hang', 'user_id', 'iso-user-hang')
                   FROM generate_series(1, {backlog})""")
        wait_until(f"the hanging endpoint's backlog ({phase})", lambda: int(bench.q(
            f"SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE oauth_client_id = '{ISOLATION_HANGING}'"
        )[0][0]) >= backlog and hanging.open_now() >= ISOLATION_LIMIT, 60, workers, interval=0.05)
        backlog_at = time.time()
        log(f"{phase}: {hanging.open_now()} requests hanging; inserting {events} events for the healthy "
            f"endpoint, {ISOLATION_GAP_MS} ms apart")
        script = "".join(
            "INSERT INTO webhook_worker.jobs (kind, payload) VALUES ('integration.connected', "
            "'{\"integration_account_id\": \"iso-acct-ok\", \"user_id\": \"iso-user-ok\"}') "
            "RETURNING id, extract(epoch FROM created_at);\n"
            + (f"SELECT pg_sleep({gap}) \\g /dev/null\n" if i < events - 1 else "")
            for i in range(events))
        created = {int(i): float(t) for i, t in psql(bench.url, script, bench.timeout)}
        wait_until(f"the healthy endpoint's {events} deliveries ({phase})",
                   lambda: receiver.snapshot()[1] >= events, 60, workers, interval=0.05)
        # Let the hanging endpoint's attempts go on until its circuit opens (5 timeouts, two
        # rounds of the request timeout), to count the requests it got.
        try:
            wait_until(f"the hanging endpoint's circuit to open ({phase})", lambda: bench.q(
                f"SELECT state FROM webhook_worker.endpoints WHERE key = '{hang_key}'") == [["open"]],
                30, workers, interval=0.05)
            opened_after = time.time() - backlog_at
        except RunError:
            opened_after = None
        time.sleep(0.5)
    finally:
        sampler.finish()
        stop_workers(workers)
    arrivals, requests = receiver.snapshot()
    latency = []
    for delivery_id, source_job_id in bench.q(f"""
            SELECT delivery_id, source_job_id FROM webhook_worker.webhook_deliveries
            WHERE oauth_client_id = '{ISOLATION_HEALTHY}'"""):
        t0, arrived = created.get(int(source_job_id)), arrivals.get(delivery_id)
        if t0 is not None and arrived is not None:
            latency.append((arrived - t0) * 1000)
    circuit = bench.q(f"""SELECT state, trips, failures FROM webhook_worker.endpoints WHERE key = '{hang_key}'""")
    hang_statuses = {st: int(n) for st, n in bench.q(f"""
        SELECT status, count(*) FROM webhook_worker.webhook_deliveries
        WHERE oauth_client_id = '{ISOLATION_HANGING}' GROUP BY 1""")}
    p50, p99 = percentile(latency, 50), percentile(latency, 99)
    worst = max(latency) if latency else None
    met = p50 is not None and p50 < ISOLATION_TARGET_P50_MS and worst < ISOLATION_TARGET_MAX_MS
    sampled_peak = sampler.peak.get(hang_key, 0)
    result = {
        "hanging_backlog": backlog,
        "healthy_events": events,
        "gap_ms": ISOLATION_GAP_MS,
        "request_timeout": ISOLATION_REQUEST_TIMEOUT,
        "definition": "healthy latency = the fast receiver's arrival (time.time()) - the event job's "
                      "created_at, for events inserted one at a time while the hanging endpoint's backlog "
                      "waits and its first requests hang; in flight = requests open at once at the hanging "
                      "endpoint (from arrival until the worker closes the connection) and its running "
                      f"webhook.deliver jobs sampled every {int(EndpointSampler.INTERVAL * 1000)} ms",
        "healthy_delivered": len(latency),
        "healthy_insert_to_post_ms": {"p50": r(p50), "p99": r(p99), "max": r(worst)},
        "targets_ms": {"p50": ISOLATION_TARGET_P50_MS, "max": ISOLATION_TARGET_MAX_MS},
        "targets_met": met,
        "hanging_in_flight_peak": {"receiver": hanging.peak, "database_sampled": sampled_peak,
                                   "limit": ISOLATION_LIMIT, "samples": sampler.samples},
        "hanging_requests": hanging.requests,
        "hanging_circuit": ({"state": circuit[0][0], "trips": int(circuit[0][1]), "failures": int(circuit[0][2])}
                            if circuit else None),
        "hanging_circuit_open_after_s": r(opened_after, 2),
        "hanging_deliveries_by_status": hang_statuses,
        "receiver_requests": requests,
        "peak_rss_mib": workers[0].summary()["peak_rss_mib"],
        "worker_processes": [w.summary() for w in workers],
    }
    if len(latency) != events or requests != events:
        bench.problems.append(f"{phase}: the healthy endpoint got {requests} requests for {len(latency)} of "
                             f"{events} deliveries")
    if max(hanging.peak, sampled_peak) > ISOLATION_LIMIT:
        bench.problems.append(f"{phase}: {hanging.peak} requests open at once at the hanging endpoint "
                             f"({sampled_peak} running in the database), more than {ISOLATION_LIMIT}")
    if not met:
        bench.problems.append(f"{phase}: healthy insert -> POST p50 {r(p50)} ms, max {r(worst)} ms: target missed "
                             f"(p50 < {ISOLATION_TARGET_P50_MS} ms, max < {ISOLATION_TARGET_MAX_MS} ms)")
    if opened_after is None:
        bench.problems.append(f"{phase}: the hanging endpoint's circuit did not open ({circuit})")
    # The hanging endpoint's failures are expected warnings; anything else is not.
    bench.check_workers(phase, workers, expected=(
        "webhook attempt failed", "endpoint circuit is now open"))
    log(f"{phase}: healthy p50 {r(p50)} ms, max {r(worst)} ms; hanging endpoint peak {hanging.peak} in flight, "
        f"{hanging.requests} requests")
    return result
