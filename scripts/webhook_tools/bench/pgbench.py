"""7: pgbench's ceiling on the same cluster."""

import glob
import os
import shutil
import subprocess

from ..core import RunError, log
from ..postgres import recreate_database
from .figures import pgbench_figures, r
from .settings import PGBENCH_DB


def pgbench(bench):
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"),
                        key=lambda p: [int(x) if x.isdigit() else x for x in p.split("/")])
    binary = candidates[-1] if candidates else shutil.which("pgbench")
    if not binary:
        raise RunError("pgbench not found (apt-get install postgresql-contrib or postgresql)")
    recreate_database(bench.server_url, PGBENCH_DB)
    log("pgbench: initializing scale 1")
    init = subprocess.run([binary, "-i", "-s", "1", "-q", bench.pgbench_url], capture_output=True, text=True,
                          timeout=bench.timeout)
    if init.returncode != 0:
        raise RunError(f"pgbench -i failed: {init.stderr.strip()[-500:]}")
    script = os.path.join(bench.logdir, "update_one_row.sql")
    with open(script, "w") as f:
        f.write("\\set aid random(1, 100000)\n"
                "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n")
    result = {"binary": binary, "transaction": "one-row UPDATE of pgbench_accounts (scale 1)",
              "seconds": bench.pgbench_seconds}
    for clients, threads in ((1, 1), (8, 2)):
        log(f"pgbench: {clients} client(s), {bench.pgbench_seconds}s")
        done = subprocess.run(
            [binary, "-n", "-f", script, "-c", str(clients), "-j", str(threads), "-T", str(bench.pgbench_seconds),
             bench.pgbench_url], capture_output=True, text=True, timeout=bench.pgbench_seconds + bench.timeout)
        if done.returncode != 0:
            raise RunError(f"pgbench -c {clients} failed: {done.stderr.strip()[-500:]}")
        tps, latency = pgbench_figures(done.stdout)
        result[f"clients_{clients}"] = {"clients": clients, "threads": threads, "tps": r(tps),
                                        "latency_avg_ms": latency}
    return result
