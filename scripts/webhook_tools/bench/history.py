"""8: the partitioned history (issue 23): removing a day of delivery attempts by dropping its
partition beside DELETE (time, WAL, disk space returned), and the console's search by client over
30 days of deliveries (p95, timed in the server)."""

import time

from ..core import log, percentile
from .db import psql, psql_value
from .figures import history_removal, r

DAY = "interval '1 day'"


def wal_lsn(url):
    return psql_value(url, "SELECT pg_current_wal_insert_lsn()")


def wal_since(url, lsn):
    return int(psql_value(url, f"SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '{lsn}')"))


def timed(url, sql, timeout):
    lsn = wal_lsn(url)
    started = time.monotonic()
    psql(url, sql, timeout)
    return time.monotonic() - started, wal_since(url, lsn)


def fill_attempts(url, day, rows, timeout):
    """`rows` delivery attempts spread over day `day` (days before today, UTC)."""
    psql(url, f"""
        INSERT INTO webhook_worker.delivery_attempts (delivery_id, attempt, url, http_status, duration_ms,
            attempted_at)
        SELECT gen_random_uuid(), 1, 'https://bench.example/hook', 204, 3,
               date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - {day} * {DAY}
               + (g % 86400) * interval '1 second'
        FROM generate_series(1, {rows}) g""", timeout)
    psql(url, "VACUUM (ANALYZE) webhook_worker.delivery_attempts", timeout)


def partition_of(url, day):
    return psql_value(url, f"""
        SELECT partition_name FROM webhook_worker.history_partitions
        WHERE table_name = 'delivery_attempts'
          AND from_at = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - {day} * {DAY}""")


def size(url, partition):
    return int(psql_value(url, f"SELECT pg_total_relation_size('webhook_worker.{partition}')"))


def history(bench):
    url, rows, timeout = bench.url, bench.history_rows, bench.timeout
    # Daily partitions from 32 days ago to 3 days ahead, instead of the migration's one partition
    # for everything before it.
    psql(url, """
        SELECT count(*) FROM webhook_worker.drop_history_partitions('infinity');
        SELECT count(*) FROM webhook_worker.create_history_partitions(interval '1 day', interval '1 day',
                                                                     now() - interval '32 days');
        SELECT count(*) FROM webhook_worker.create_history_partitions(interval '1 day', interval '3 days');""",
         timeout)
    result = {"attempt_rows_per_day": rows}

    # The same day's worth of attempts twice: one removed by DELETE, as prune does (one statement:
    # the batches would only add to it), the other by dropping its partition, as the upkeep does.
    log(f"history: {rows:,} attempts in each of two days")
    fill_attempts(url, 20, rows, timeout)
    fill_attempts(url, 21, rows, timeout)
    # The removals and the search are measured holding BENCH_LOCK; the loads are not.
    with bench.quiet():
        deleted_day, dropped_day = partition_of(url, 20), partition_of(url, 21)
        before_delete = size(url, deleted_day)
        seconds, wal = timed(url, f"""
            DELETE FROM webhook_worker.delivery_attempts
            WHERE attempted_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - 20 * {DAY}
              AND attempted_at < date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - 19 * {DAY}""",
                             timeout)
        delete = {"seconds": seconds, "wal_bytes": wal, "bytes_before": before_delete,
                  "bytes_returned": before_delete - size(url, deleted_day)}
        before_drop = size(url, dropped_day)
        seconds, wal = timed(url, f"""
            ALTER TABLE webhook_worker.delivery_attempts DETACH PARTITION webhook_worker.{dropped_day} CONCURRENTLY;
            DROP TABLE webhook_worker.{dropped_day};""", timeout)
        drop = {"seconds": seconds, "wal_bytes": wal, "bytes_before": before_drop, "bytes_returned": before_drop}
    result.update(history_removal(delete, drop))

    # 30 days of deliveries for 100 clients; the console's search (newest 50 of one client in the
    # last 30 days), 200 times, each timed inside the server.
    per_day = max(1000, rows // 50)
    log(f"history: {per_day * 30:,} deliveries over 30 days")
    psql(url, f"""
        INSERT INTO webhook_worker.webhook_deliveries (delivery_id, event, source_job_id, integration_account_id,
            user_id, oauth_client_id, payload, status, attempts, created_at, updated_at)
        SELECT gen_random_uuid(), 'integration.connected', g, 'acct', 'user', 'bench-client-' || (g % 100), '{{}}',
               'delivered', 1, now() - (g % (30 * 86400)) * interval '1 second', now()
        FROM generate_series(1, {per_day * 30}) g;
        ANALYZE webhook_worker.webhook_deliveries;""", timeout)
    with bench.quiet():
        rows_ms = psql(url, """
            CREATE TEMP TABLE timings (ms float8);
            DO $$
            DECLARE started timestamptz; n int;
            BEGIN
                FOR i IN 1..200 LOOP
                    started := clock_timestamp();
                    SELECT count(*) INTO n FROM (
                        SELECT delivery_id, status, created_at FROM webhook_worker.webhook_deliveries
                        WHERE oauth_client_id = 'bench-client-' || (i * 37 % 100)
                          AND created_at >= now() - interval '30 days'
                        ORDER BY created_at DESC, delivery_id LIMIT 50) s;
                    INSERT INTO timings VALUES (extract(epoch FROM clock_timestamp() - started) * 1000);
                END LOOP;
            END $$;
            SELECT ms FROM timings;""", timeout)
    timings = [float(row[0]) for row in rows_ms if row and row[0]]
    result["search"] = {"deliveries": per_day * 30, "clients": 100, "queries": len(timings),
                        "p50_ms": r(percentile(timings, 50), 2), "p95_ms": r(percentile(timings, 95), 2)}
    log(f"history: DELETE {result['delete']['seconds']} s, drop {result['drop']['seconds']} s, "
        f"search p95 {result['search']['p95_ms']} ms")
    return result
