"""The benchmark's order: the phases, pgbench, the report."""

import shutil
import sys

from ..core import RunError, log, setup_process
from ..postgres import PgBouncer, drop_database
from . import burndown, delivery, endpoints, history, history_load, isolation, latency, pgbench, report, soak
from .context import Bench
from .settings import BENCH_DB, PGBENCH_DB
from .workers import kill_all_workers


def run(bench):
    if bench.soak_seconds:
        return soak.run_soak(bench)
    env = bench.environment()
    pg = env["postgresql"]
    print(f"PostgreSQL {pg['server_version']}: fsync={pg['fsync']} synchronous_commit={pg['synchronous_commit']} "
          f"full_page_writes={pg['full_page_writes']} wal_sync_method={pg['wal_sync_method']} "
          f"shared_buffers={pg['shared_buffers']} autovacuum_naptime={pg['autovacuum_naptime']}", flush=True)
    print(f"binary {env['binary']} (built {env['binary_modified_utc']}), commit {env['git_commit']}, "
          f"{env['cpus']} CPUs", flush=True)
    bench.results["environment"] = env
    try:
        bench.setup()
        if "burndown" not in bench.skip:
            bench.phase("burn_down_1_worker",
                        lambda: burndown.burn_down(bench, 1, bench.jobs, "burn-down, 1 worker", "burndown1"))
            bench.phase("burn_down_2_workers",
                        lambda: burndown.burn_down(bench, 2, bench.jobs, "burn-down, 2 workers", "burndown2"))
            one = bench.results["burn_down_1_worker"].get("jobs_per_second")
            two = bench.results["burn_down_2_workers"].get("jobs_per_second")
            bench.results["burn_down_ratio_2_over_1"] = round(two / one, 2) if one and two else None
        if "latency" not in bench.skip:
            bench.phase("pickup_latency", lambda: latency.latency(bench))
        if "delivery" not in bench.skip:
            bench.phase("delivery", lambda: bench.repeated(lambda: delivery.delivery(bench, bench.clients)))
        if "delivery-2-clients" not in bench.skip and bench.clients != 2:
            bench.phase("delivery_2_clients", lambda: bench.repeated(lambda: delivery.delivery(bench, 2)))
        if "pgbouncer" not in bench.skip:
            bench.phase("pgbouncer", lambda: delivery.pgbouncer(bench))
        if "latency-under-load" not in bench.skip:
            bench.phase("latency_under_load", lambda: latency.latency_under_load(bench))
        if "isolation" not in bench.skip:
            bench.phase("isolation", lambda: isolation.isolation(bench))
        for name, key, function in (("one-endpoint", "one_endpoint", endpoints.one_endpoint),
                                    ("slow-endpoint", "slow_endpoint", endpoints.slow),
                                    ("fairness", "fairness", endpoints.fairness),
                                    ("retry-after", "retry_after", endpoints.retry_after)):
            if name not in bench.skip:
                # One endpoint's throughput is judged on the median of BENCH_REPEAT runs, as the
                # delivery phases' are; the others measure latencies or a behaviour, once.
                run = (lambda function=function: bench.repeated(lambda: function(bench))) if name == "one-endpoint" \
                    else (lambda function=function: function(bench))
                bench.phase(key, run)
        if "backlog" not in bench.skip:
            bench.phase("backlog", lambda: burndown.burn_down(bench, 1, bench.backlog_jobs, "backlog", "backlog"))
            small, large = bench.results.get("burn_down_1_worker", {}), bench.results["backlog"]
            if small.get("jobs_per_second") and large.get("jobs_per_second"):
                large["over_burn_down_1_worker"] = round(large["jobs_per_second"] / small["jobs_per_second"], 2)
        if "history" not in bench.skip:
            bench.phase("history", lambda: history.history(bench), quiet=False)
        if "history-load" not in bench.skip:
            bench.phase("history_load", lambda: history_load.history_load(bench), quiet=False)
    except RunError as error:
        log(f"setup FAILED: {error}")
        bench.results["setup_error"] = str(error)
        bench.problems.append(f"setup: {error}".splitlines()[0])
    finally:
        if bench.session:
            bench.session.close()
    if "pgbench" not in bench.skip:
        bench.phase("pgbench", lambda: pgbench.pgbench(bench))
    if not bench.keep:
        for name in (BENCH_DB, PGBENCH_DB):
            try:
                drop_database(bench.server_url, name)
            except RunError as error:
                log(f"could not drop {name}: {error}")
    bench.results["problems"] = bench.problems
    report.report(bench)
    if bench.keep:
        print(f"worker logs kept in {bench.logdir}")
    else:
        shutil.rmtree(bench.logdir, ignore_errors=True)
    return 1 if bench.problems else 0


def main():
    setup_process()
    bench = Bench()
    try:
        status = run(bench)
    finally:
        kill_all_workers()
        PgBouncer.close_all()
    sys.exit(status)
