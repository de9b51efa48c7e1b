"""9: delivery throughput with a large history present (issue 23): BENCH_HISTORY_LOAD_ROWS rows
(50,000,000) of history, deliveries, their attempts and job attempts in the ratio 2 : 2 : 1,
spread over the 30 days before yesterday in daily partitions; then the delivery phase again, its
rate and database time beside the empty database's (phase 3) of the same run."""

from ..core import log
from . import delivery
from .db import psql, psql_value
from .figures import r

DAYS = 30


def v7(ms, g):
    """SQL for a UUID version 7 from a time in milliseconds and a row number: time-ordered, as
    the worker makes them."""
    return (f"(lpad(to_hex({ms}), 12, '0') || '7' || substr(md5(({g})::text), 1, 3) || '8' "
            f"|| substr(md5(({g})::text), 4, 15))::uuid")


def fill(url, rows, timeout):
    """`rows` rows of history, one statement per table and day (days 2 to 31 before today)."""
    deliveries = rows * 2 // 5
    attempts = rows * 2 // 5
    job_attempts = rows - deliveries - attempts
    for day in range(2, DAYS + 2):
        start = f"(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '{day} days')"
        at = f"{start} + (g % 86400000) * interval '1 millisecond'"
        ms = f"(extract(epoch FROM {start}) * 1000)::bigint + g % 86400000"
        base = f"{day}::bigint * 1000000000"  # each day's ids apart; bigint, or day 3 overflows
        psql(url, f"""
            INSERT INTO webhook_worker.webhook_deliveries (delivery_id, event, source_job_id, integration_account_id,
                user_id, oauth_client_id, payload, status, attempts, created_at, updated_at, delivered_at)
            SELECT {v7(ms, f"g + {base}")}, 'integration.connected', {base} + g / 16,
                   'old-acct', 'old-user', 'bench-client-' || (g % 16 + 1), '{{}}', 'delivered', 1, {at}, {at}, {at}
            FROM generate_series(1, {deliveries // DAYS}) g;
            INSERT INTO webhook_worker.delivery_attempts (delivery_id, attempt, job_id, worker_id, url, http_status,
                duration_ms, attempted_at)
            SELECT {v7(ms, f"g + {base}")}, 1, g, 'old-worker', 'http://127.0.0.1/hook', 204, 3, {at}
            FROM generate_series(1, {attempts // DAYS}) g;
            INSERT INTO webhook_worker.job_attempts (job_id, kind, attempt, worker_id, started_at, finished_at, outcome)
            SELECT {base} + g, 'webhook.deliver', 1, 'old-worker', {at}, {at}, 'succeeded'
            FROM generate_series(1, {job_attempts // DAYS}) g;""", timeout)
    psql(url, "VACUUM (ANALYZE) webhook_worker.webhook_deliveries, webhook_worker.delivery_attempts, "
              "webhook_worker.job_attempts", timeout)


def history_load(bench):
    url, rows, timeout = bench.url, bench.history_load_rows, bench.timeout
    # Daily partitions from 32 days ago to 3 days ahead (the migration's one partition for what came
    # before partitioning dropped), as the history phase makes them.
    psql(url, """
        TRUNCATE webhook_worker.delivery_attempts, webhook_worker.webhook_deliveries, webhook_worker.job_attempts;
        SELECT count(*) FROM webhook_worker.drop_history_partitions('infinity');
        SELECT count(*) FROM webhook_worker.create_history_partitions(interval '1 day', interval '1 day',
                                                                     now() - interval '32 days');
        SELECT count(*) FROM webhook_worker.create_history_partitions(interval '1 day', interval '3 days');""",
         timeout)
    log(f"history load: {rows:,} rows of history over {DAYS} days")
    fill(url, rows, timeout)
    present = int(psql_value(url, """
        SELECT (SELECT count(*) FROM webhook_worker.webhook_deliveries)
             + (SELECT count(*) FROM webhook_worker.delivery_attempts)
             + (SELECT count(*) FROM webhook_worker.job_attempts)""", timeout))
    partitions = int(psql_value(url, "SELECT count(*) FROM webhook_worker.history_partitions"))
    mib = float(psql_value(url, "SELECT sum(bytes) / 1048576.0 FROM webhook_worker.history_partitions"))
    with bench.quiet():
        loaded = delivery.delivery(bench, bench.clients, phase=f"delivery with history, {bench.clients} clients",
                                   keep_history=True)
    empty = bench.results.get("delivery", {})

    def over(*path):
        value, base = loaded, empty
        for p in path:
            value = value.get(p) if isinstance(value, dict) else None
            base = base.get(p) if isinstance(base, dict) else None
        return {"with_history": value, "empty": base, "ratio": round(value / base, 3) if value and base else None}

    result = {
        "history_rows": present, "partitions": partitions, "history_mib": r(mib, 1),
        "deliveries_per_second": over("deliveries_per_second"),
        "db_ms_per_delivery": over("database_time", "ms_per_delivery"),
        "delivery": loaded,
    }
    log(f"history load: {present:,} rows ({r(mib, 1)} MiB in {partitions} partitions): "
        f"{result['deliveries_per_second']['with_history']}/s vs {result['deliveries_per_second']['empty']}/s empty")
    return result
