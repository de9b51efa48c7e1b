"""The report (figures, then every check with ok or FAIL, then examples of each violation) and
the dump of the run's rows kept for looking into a failure."""

import json
import os

from ...core import RunError, log
from ...postgres import psql_lines
from ...processes import log_lines
from ..settings import T0


def report(an):
    c = an.c
    out = []
    out.append("")
    out.append(f"webhook-worker chaos run: {c.seconds}s of faults, {c.replica_count} replicas, seed {c.seed}")
    out.append("")
    width = max(len(k) for k in an.figures)
    for key, value in an.figures.items():
        out.append(f"  {key:<{width}}  {value}")
    out.append("")
    failed = 0
    for name, problems in an.violations.items():
        status = "ok  " if not problems else "FAIL"
        failed += bool(problems)
        out.append(f"  [{status}] {name}" + (f": {len(problems)} violation(s)" if problems else ""))
    for note in an.notes:
        out.append(f"  note: {note}")
    print("\n".join(out), flush=True)
    if failed:
        print("\nViolations (up to 5 of each):", flush=True)
        for name, problems in an.violations.items():
            if problems:
                print(f"\n--- {name}", flush=True)
                for p in problems[:5]:
                    print(p, flush=True)
        if an.error_logs:
            print("\nReplica logs with error-level lines (those lines, then the log's last 10 lines):", flush=True)
            for worker, bad in sorted(an.error_logs.items()):
                path = os.path.join(c.logdir, f"{worker}.log")
                print(f"\n--- {path}: {len(bad)} error-level line(s)", flush=True)
                for line in bad[:10]:
                    print("  " + line[:600], flush=True)
                print("  ...", flush=True)
                for line in log_lines(path)[-10:]:
                    print("  " + line[:600], flush=True)
        print(f"\nworker logs, the PostgreSQL log and the run's rows ({dump(an)}) kept in {c.logdir}",
              flush=True)
    elif c.keep_logs:
        dump(an)
    print(f"\nCHAOS {'PASS' if not failed else 'FAIL'}: {len(an.violations) - failed} of "
          f"{len(an.violations)} checks passed", flush=True)
    return 0 if not failed else 1


def dump(an):
    """The run's rows, for looking into a failure after the cluster is gone."""
    folder = os.path.join(an.c.logdir, "db")
    os.makedirs(folder, exist_ok=True)
    tables = {
        "job_attempts": "SELECT * FROM webhook_worker.job_attempts ORDER BY id",
        "dead_letter_jobs": "SELECT * FROM webhook_worker.dead_letter_jobs ORDER BY id",
        "webhook_deliveries": "SELECT * FROM webhook_worker.webhook_deliveries ORDER BY created_at",
        "delivery_attempts": "SELECT * FROM webhook_worker.delivery_attempts ORDER BY id",
        "jobs_left": "SELECT * FROM webhook_worker.jobs ORDER BY id",
        "chaos_events": "SELECT * FROM chaos_events ORDER BY seq",
        "chaos_jobs": "SELECT * FROM chaos_jobs ORDER BY job_id",
    }
    script = "".join(f"\\copy ({sql}) TO '{os.path.join(folder, name + '.csv')}' CSV HEADER\n"
                     for name, sql in tables.items())
    try:
        psql_lines(an.c.url, script, timeout=120)
    except RunError as error:
        log(f"could not dump the database: {error}")
    faults = {"kills": an.c.kills, "graceful": an.c.graceful, "terminations": an.c.terminations,
              "pg_restarts": an.c.pg_restarts, "generations": an.c.generations, "t0": T0}
    with open(os.path.join(folder, "faults.json"), "w") as f:
        json.dump(faults, f, indent=1)
    with open(os.path.join(folder, "receipts.json"), "w") as f:
        json.dump([{k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in r.items()}
                   for r in an.all_receipts], f)
    return folder
