"""Per-endpoint phases: how fast one endpoint is served, whether a busy endpoint delays a new
one, and whether a 429's Retry-After is honoured. Each OAuth client here has a user and an
integration account of its own, so an event goes to exactly one endpoint."""

import time

from ..core import RunError, log
from ..postgres import load_app_tables
from . import delivery as delivery_phase
from .db import psql
from .endpoint_figures import arrivals_after, inside_window, rate_in_window, sent_inside_window
from .endpoint_servers import slow_endpoint, throttling_endpoint
from .figures import distribution, r
from .receivers import Nginx
from .settings import (
    FAIR_BACKLOG,
    FAIR_GAP_MS,
    FAIR_PROBES,
    HTTP_ARGS,
    ISOLATION_LIMIT,
    RETRY_AFTER_EVENTS,
    RETRY_AFTER_EXCUSE_S,
    RETRY_AFTER_SECONDS,
    SECRET,
    SLOW_DELAY_S,
    SLOW_EVENTS,
    SLOW_MEASURE_S,
    SLOW_WARM_S,
)
from .workers import stop_workers, wait_until


def seed_clients(bench, clients):
    """`clients`: {client id: webhookUrl}. Each gets user 'u-<id>' and account 'a-<id>', granted
    to it alone. Empties the queue and the history."""
    load_app_tables(bench.url)
    values = lambda fmt: ",\n".join(fmt(c, url) for c, url in clients.items())  # noqa: E731
    psql(bench.url, f"""
        TRUNCATE "OAuthIntegrationGrant", "OAuthClient", "IntegrationAccount", "IntegrationDefinitionV2", "User"
            CASCADE;
        TRUNCATE webhook_worker.delivery_attempts, webhook_worker.webhook_deliveries, webhook_worker.jobs,
                 webhook_worker.job_attempts, webhook_worker.dead_letter_jobs, webhook_worker.endpoints,
                 webhook_worker.concurrency_keys, webhook_worker.concurrency_key_wakeups;
        INSERT INTO "IntegrationDefinitionV2" (id, name, slug, icon)
        VALUES ('bench-def-linear', 'Linear', 'linear', 'https://example.com/linear-icon.png');
        INSERT INTO "User" (id, email, name) VALUES
        {values(lambda c, _: f"('u-{c}', '{c}@example.com', '{c}')")};
        INSERT INTO "IntegrationAccount" (id, "accountId", "integrationDefinitionId", "integratedById") VALUES
        {values(lambda c, _: f"('a-{c}', 'lin_{c}', 'bench-def-linear', 'u-{c}')")};
        INSERT INTO "OAuthClient" (id, "clientId", name, "allowedScopes", "webhookUrl", "webhookSecret") VALUES
        {values(lambda c, url: f"('{c}', '{c}-id', 'App {c}', 'integration', '{url}', '{SECRET}')")};
        INSERT INTO "OAuthIntegrationGrant" (id, "clientId", "userId", "integrationAccountId") VALUES
        {values(lambda c, _: f"('g-{c}', '{c}', 'u-{c}', 'a-{c}')")};
        ANALYZE;
        """)


def events_for(client, count):
    """One statement inserting `count` integration.connected events for `client` alone."""
    return f"""INSERT INTO webhook_worker.jobs (kind, payload)
               SELECT 'integration.connected', jsonb_build_object('integration_account_id', 'a-{client}',
                                                                  'user_id', 'u-{client}')
               FROM generate_series(1, {count})"""


def key_limit(bench, client):
    """The endpoint's own limit in the database, when this build keeps one (None otherwise)."""
    if bench.q("SELECT to_regclass('webhook_worker.concurrency_key_limits') IS NOT NULL") != [["t"]]:
        return None
    rows = bench.q(f"""SELECT max_running FROM webhook_worker.concurrency_key_limits
                      WHERE kind = 'webhook.deliver' AND concurrency_key = 'client:{client}'""")
    return int(rows[0][0]) if rows else None


def alive_or_fail(phase, workers):
    for worker in workers:
        if not worker.alive():
            tail = "\n".join(worker.log_lines()[-10:])
            raise RunError(f"{worker.name} exited ({worker.process.returncode}) during {phase}:\n{tail}")


def one_endpoint(bench):
    """Delivery throughput to one endpoint (nginx answering 204 at once)."""
    return delivery_phase.delivery(bench, 1, phase="one endpoint (nginx)", events=bench.one_endpoint_events)


def slow(bench):
    """One healthy endpoint answering every request after SLOW_DELAY_S, with more deliveries
    queued than it can take: deliveries per second once warm, requests open at once."""
    phase, client = "slow endpoint", "slow"
    server = slow_endpoint(SLOW_DELAY_S)
    try:
        seed_clients(bench, {client: f"http://127.0.0.1:{server.port}/hook"})
        workers = bench.start_workers(1, "slow", HTTP_ARGS)
        limits = []
        try:
            bench.warm_up(workers)
            log(f"{phase}: {SLOW_EVENTS} events to an endpoint answering in {int(SLOW_DELAY_S * 1000)} ms, "
                f"measured from {SLOW_WARM_S} s to {SLOW_WARM_S + SLOW_MEASURE_S} s")
            bench.q(events_for(client, SLOW_EVENTS))
            start = time.time()
            end = start + SLOW_WARM_S + SLOW_MEASURE_S
            while time.time() < end:
                limits.append(key_limit(bench, client))
                alive_or_fail(phase, workers)
                time.sleep(0.5)
        finally:
            stop_workers(workers)
        requests, peak = server.snapshot()
    finally:
        server.close()
    answered = [answered for _, answered, _, status in requests if status == 204]
    rate = rate_in_window(answered, start + SLOW_WARM_S, start + SLOW_WARM_S + SLOW_MEASURE_S)
    known = [v for v in limits if v is not None]
    bench.check_workers(phase, workers)
    log(f"{phase}: {rate} deliveries/s once warm, {peak} requests open at once at most")
    return {
        "delay_ms": int(SLOW_DELAY_S * 1000),
        "events": SLOW_EVENTS,
        "window_s": [SLOW_WARM_S, SLOW_WARM_S + SLOW_MEASURE_S],
        "deliveries_per_second": rate,
        "in_flight_peak": peak,
        "limit_peak": max(known) if known else None,
        "requests": len(requests),
        "definition": "requests answered 204 by the endpoint between the window's bounds (seconds after "
                      "the insert) / the window's length; in flight = requests open at once at the endpoint",
        "peak_rss_mib": workers[0].summary()["peak_rss_mib"],
    }


def fairness(bench):
    """An endpoint with FAIR_BACKLOG deliveries queued, then FAIR_PROBES events for a second
    endpoint, one at a time FAIR_GAP_MS apart: the second endpoint's insert-to-receipt latency."""
    phase = "fairness"
    receiver = Nginx(bench.logdir)
    try:
        seed_clients(bench, {"busy": f"http://127.0.0.1:{receiver.port}/busy",
                             "new": f"http://127.0.0.1:{receiver.port}/new"})
        workers = bench.start_workers(1, "fairness", HTTP_ARGS)
        try:
            bench.warm_up(workers)
            log(f"{phase}: {FAIR_BACKLOG} events for the busy endpoint; waiting for their fan-out")
            bench.q(events_for("busy", FAIR_BACKLOG), bench.timeout)
            wait_until(f"the busy endpoint's fan-out ({phase})", lambda: bench.q(
                "SELECT count(*) FROM webhook_worker.jobs WHERE kind = 'integration.connected'") == [["0"]],
                bench.timeout, workers, interval=0.2)
            queued = int(bench.q("SELECT count(*) FROM webhook_worker.jobs WHERE kind = 'webhook.deliver'")[0][0])
            log(f"{phase}: {queued} deliveries queued for the busy endpoint; {FAIR_PROBES} events for the new one, "
                f"{FAIR_GAP_MS} ms apart")
            script = "".join(
                events_for("new", 1) + " RETURNING id, extract(epoch FROM created_at);\n"
                + (f"SELECT pg_sleep({FAIR_GAP_MS / 1000}) \\g /dev/null\n" if i < FAIR_PROBES - 1 else "")
                for i in range(FAIR_PROBES))
            created = {int(i): float(t) for i, t in psql(bench.url, script, bench.timeout)}
            wait_until(f"the new endpoint's deliveries ({phase})", lambda: int(bench.q(
                "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE oauth_client_id = 'new' "
                "AND status = 'delivered'")[0][0]) >= FAIR_PROBES, bench.timeout, workers, interval=0.05)
        finally:
            stop_workers(workers)
    finally:
        receiver.close()
    arrivals = {d: t for t, d, _, status in receiver.requests() if status == 204}
    latency = []
    for delivery_id, source_job_id in bench.q(
            "SELECT delivery_id, source_job_id FROM webhook_worker.webhook_deliveries WHERE oauth_client_id = 'new'"):
        t0, arrived = created.get(int(source_job_id)), arrivals.get(delivery_id)
        if t0 is not None and arrived is not None:
            latency.append((arrived - t0) * 1000)
    if len(latency) != FAIR_PROBES:
        bench.problems.append(f"{phase}: {len(latency)} of the new endpoint's {FAIR_PROBES} deliveries reached nginx")
    bench.check_workers(phase, workers)
    figures = distribution(latency)
    log(f"{phase}: first delivery to the new endpoint p50 {figures['p50']} ms, max {figures['max']} ms, "
        f"{queued} queued for the busy one")
    return {
        "busy_queued": queued,
        "probes": FAIR_PROBES,
        "gap_ms": FAIR_GAP_MS,
        "new_insert_to_receipt_ms": figures,
        "definition": "nginx's arrival of the new endpoint's delivery - its event job's created_at, events "
                      "inserted one at a time once the busy endpoint's events have fanned out",
    }


def retry_after(bench):
    """An endpoint that answers its first request 429 with Retry-After, with RETRY_AFTER_EVENTS
    deliveries queued: requests that arrive after the 429 was answered and before the time it
    asked for (the target is none), and when the throttled delivery was retried."""
    phase, client = "retry-after", "throttled"
    server = throttling_endpoint(RETRY_AFTER_SECONDS)
    try:
        seed_clients(bench, {client: f"http://127.0.0.1:{server.port}/hook"})
        workers = bench.start_workers(1, "retry-after", HTTP_ARGS)
        try:
            bench.warm_up(workers)
            log(f"{phase}: {RETRY_AFTER_EVENTS} events to an endpoint that answers the first 429, "
                f"Retry-After: {RETRY_AFTER_SECONDS}")
            bench.q(events_for(client, RETRY_AFTER_EVENTS))
            wait_until(f"every delivery ({phase})", lambda: int(bench.q(
                "SELECT count(*) FROM webhook_worker.webhook_deliveries WHERE status = 'delivered'")[0][0])
                >= RETRY_AFTER_EVENTS, bench.timeout, workers, interval=0.05)
        finally:
            stop_workers(workers)
        requests, _ = server.snapshot()
    finally:
        server.close()
    throttled = next((req for req in requests if req[3] == 429), None)
    inside = inside_window(requests, throttled[1], RETRY_AFTER_SECONDS) if throttled else None
    offsets = arrivals_after(requests, throttled[1], RETRY_AFTER_SECONDS) if throttled else []
    # The endpoint starts at ISOLATION_LIMIT in flight and the 429 answers its first request, so the
    # first that many requests can all leave before any answer comes back: the worker cannot know
    # of the 429 when it sends them, nor call back a request already sent. The target counts the
    # others inside the window (sent inside it), and those of the first that arrived more than
    # RETRY_AFTER_EXCUSE_S after the 429 (they may have been sent late). The arrivals are kept beside it.
    later = sent_inside_window(requests, throttled[1], RETRY_AFTER_SECONDS, ISOLATION_LIMIT,
                               RETRY_AFTER_EXCUSE_S) if throttled else None
    retried = next((req[0] for req in requests if throttled and req[2] == throttled[2] and req[3] != 429), None)
    bench.check_workers(phase, workers, expected=("webhook attempt failed", "asked for a pause"))
    log(f"{phase}: {inside} requests inside the Retry-After window (arrived {offsets} ms after the 429 was "
        f"answered), {later} of them sent after an answer could have come back; the throttled delivery retried "
        f"{r(retried - throttled[1], 2) if retried and throttled else '-'} s after its 429")
    return {
        "events": RETRY_AFTER_EVENTS,
        "retry_after_s": RETRY_AFTER_SECONDS,
        "requests": len(requests),
        "requests_inside_window": inside,
        "inside_arrived_after_ms": offsets,
        "inside_after_first_requests": later,
        "requests_sent_inside_window": later,
        "throttled_retried_after_s": r(retried - throttled[1], 2) if retried and throttled else None,
        "definition": ("requests_inside_window: requests arriving after the 429 was answered and before "
                       "Retry-After seconds passed; requests_sent_inside_window: those of them sent after an "
                       f"answer could have come back (not among the first {ISOLATION_LIMIT}, sent at once, "
                       f"arriving within {RETRY_AFTER_EXCUSE_S * 1000:.0f} ms of the 429)"),
    }
