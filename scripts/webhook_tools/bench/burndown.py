"""1 and 6: the queue burn-down, and the large backlog."""


from ..core import RunError, log
from . import statements
from .db import psql
from .figures import slowest_over_overall, tenth_rates
from .workers import stop_workers, wait_until


def burn_down(bench, count, jobs, phase, label, pooler=None):
    """`jobs` no-op jobs inserted in one statement, worked off by `count` workers started
    together (through `pooler`, a PgBouncer, when given)."""
    log(f"{phase}: inserting {jobs:,} no-op jobs")
    # Each round starts from an empty queue and attempt history. ANALYZE gives the claim the
    # statistics autovacuum would soon give it; CHECKPOINT keeps the insert's checkpoint out of
    # the measurement (it needs superuser or pg_checkpoint; skipped otherwise).
    bench.q("TRUNCATE webhook_worker.job_attempts")
    bench.q("TRUNCATE webhook_worker.jobs")
    bench.q(f"INSERT INTO webhook_worker.jobs (kind) SELECT 'noop' FROM generate_series(1, {jobs})", bench.timeout)
    bench.q("ANALYZE webhook_worker.jobs", bench.timeout)
    try:
        psql(bench.url, "CHECKPOINT", bench.timeout)
    except RunError:
        pass
    statements.reset(bench)
    workers = bench.start_workers(count, label, pooler=pooler)
    meter = bench.cpu_meter(workers, pooler=pooler).start()
    pids = ", ".join(str(w.pid) for w in workers)
    log(f"{phase}: {count} worker(s) started (pids {pids}); waiting for an empty queue")
    try:
        wait_until(f"the queue to empty ({phase})", lambda: bench.queue_depth() == 0, bench.timeout, workers)
        cpu = meter.stop()
    finally:
        stop_workers(workers)
    rows = bench.q("""
        SELECT count(*) FILTER (WHERE outcome = 'succeeded'), count(*),
               extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at))
        FROM webhook_worker.job_attempts WHERE kind = 'noop'""")
    succeeded, attempts, first, last = int(rows[0][0]), int(rows[0][1]), float(rows[0][2]), float(rows[0][3])
    outcomes = {o: int(n) for o, n in bench.q(
        "SELECT outcome, count(*) FROM webhook_worker.job_attempts WHERE kind = 'noop' GROUP BY 1")}
    per_worker = sorted(int(n) for (n,) in bench.q(
        "SELECT count(*) FROM webhook_worker.job_attempts WHERE kind = 'noop' AND outcome = 'succeeded' "
        "GROUP BY worker_id"))
    # Steadiness: the attempts in order of finished_at, in ten equal parts; each part's rate
    # over the time since the previous part's last job (the first's since the first start).
    tenths = tenth_rates(first, [(int(n), float(end)) for _, n, end in bench.q("""
            SELECT tenth, count(*), extract(epoch FROM max(finished_at)) FROM (
                SELECT finished_at, ntile(10) OVER (ORDER BY finished_at) AS tenth
                FROM webhook_worker.job_attempts WHERE kind = 'noop' AND outcome = 'succeeded') t
            GROUP BY 1 ORDER BY 1""", bench.timeout)])
    seconds = last - first
    rate = round(succeeded / seconds, 1) if seconds > 0 else None
    result = {
        "workers": count,
        "jobs_inserted": jobs,
        "jobs_succeeded": succeeded,
        "attempts": attempts,
        "outcomes": outcomes,
        "succeeded_per_worker": per_worker,
        "seconds": round(seconds, 3),
        "jobs_per_second": rate,
        "tenths_jobs_per_second": tenths,
        "slowest_tenth_over_overall": slowest_over_overall(tenths, rate),
        "database_time": statements.profile(bench, phase, succeeded, "job"),
        "cpu": cpu,
        "peak_rss_mib": [w.summary()["peak_rss_mib"] for w in workers],
        "worker_processes": [w.summary() for w in workers],
    }
    if succeeded != jobs or attempts != succeeded:
        bench.problems.append(f"{phase}: {succeeded} of {jobs} jobs succeeded, {attempts} attempts {outcomes}")
    if count > 1 and len(per_worker) < count:
        bench.problems.append(f"{phase}: only {len(per_worker)} of {count} workers completed jobs")
    bench.check_workers(phase, workers)
    log(f"{phase}: {succeeded} jobs in {seconds:.2f}s = {rate} jobs/s; tenths {tenths}")
    return result
