"""The bench's state (settings from the environment, its database session, results and
problems) and the helpers every phase uses."""

import contextlib
import datetime
import fcntl
import os
import shlex
import socket
import subprocess
import tempfile
import time

from ..core import ROOT, RunError, env_flag, env_int, log, settings_error, worker_binary
from ..postgres import PsqlSession, migrate, recreate_database, with_dbname
from .cpu import CpuMeter, proc_stat, process_tree
from .db import psql, psql_value
from .figures import median_run
from .settings import BENCH_DB, LOAD_CLIENTS, PGBENCH_DB, PHASES, TAG
from .workers import Worker, wait_until


class Bench:
    """What the phases share: settings, the polling session, results and problems. The phases are
    functions of it, in the modules beside this one."""

    def __init__(self):
        self.server_url = os.environ.get("DATABASE_URL", "").strip()
        if not self.server_url:
            settings_error("set DATABASE_URL (make bench starts a throwaway PostgreSQL)")
        self.binary = worker_binary()
        self.jobs = env_int("BENCH_JOBS", 100000)
        self.probes = env_int("BENCH_PROBES", 200)
        self.probe_gap_ms = env_int("BENCH_PROBE_GAP_MS", 20, minimum=0)
        self.events = env_int("BENCH_EVENTS", 2000)
        self.clients = env_int("BENCH_CLIENTS", 16)
        self.one_endpoint_events = env_int("BENCH_ONE_ENDPOINT_EVENTS", 10000)
        self.accounts = env_int("BENCH_ACCOUNTS", 50)
        self.load_seconds = env_int("BENCH_LOAD_SECONDS", 10)
        self.load_rate = env_int("BENCH_LOAD_RATE", 500)
        self.backlog_jobs = env_int("BENCH_BACKLOG_JOBS", 1000000)
        self.pgbench_seconds = env_int("BENCH_PGBENCH_SECONDS", 10)
        self.history_rows = env_int("BENCH_HISTORY_ROWS", 5000000)
        self.history_load_rows = env_int("BENCH_HISTORY_LOAD_ROWS", 50000000)
        self.timeout = env_int("BENCH_PHASE_TIMEOUT", 600)
        self.repeat = env_int("BENCH_REPEAT", 1)
        self.worker_args = shlex.split(os.environ.get("BENCH_WORKER_ARGS", ""))
        self.skip = {s.strip() for s in os.environ.get("BENCH_SKIP", "").split(",") if s.strip()}
        if self.skip - set(PHASES):
            settings_error(f"unknown BENCH_SKIP phase(s) {', '.join(sorted(self.skip - set(PHASES)))}: "
                           f"expected some of {','.join(PHASES)}")
        self.keep = env_flag("BENCH_KEEP")
        self.soak_seconds = int(os.environ.get("BENCH_SOAK_SECONDS", "0") or 0)
        self.url = with_dbname(self.server_url, BENCH_DB)
        self.pgbench_url = with_dbname(self.server_url, PGBENCH_DB)
        self.logdir = tempfile.mkdtemp(prefix="webhook-worker-bench-")
        self.session = None
        self.postmaster = None       # the server's pid when it runs on this machine (CPU shares)
        self.statements_error = None  # why pg_stat_statements cannot be read, when it cannot
        self.results = {}
        self.problems = []

    def environment(self):
        settings = {}
        for name in ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method",
                     "shared_buffers", "max_wal_size", "max_connections", "autovacuum_naptime"):
            settings[name] = psql_value(self.server_url, f"SHOW {name}")
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=ROOT).stdout.strip()
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                   text=True, cwd=ROOT).stdout.strip()
        except OSError:
            commit, dirty = "", ""
        return {
            "timestamp_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "cpus": os.cpu_count(),
            "binary": self.binary,
            "binary_modified_utc": datetime.datetime.fromtimestamp(
                os.path.getmtime(self.binary), datetime.UTC).isoformat(timespec="seconds"),
            # Outside a git checkout (an exported tree) there is no commit to name: say so.
            "git_commit": (commit + ("-dirty" if dirty else "")) if commit else "(not a git checkout)",
            "pg_tuning": os.environ.get("PG_TUNING", "(unset: scripts/pg's default is fast, fsync off)"),
            "postgresql": settings,
            "parameters": {
                "jobs": self.jobs, "probes": self.probes, "probe_gap_ms": self.probe_gap_ms,
                "events": self.events, "clients": self.clients,
                "one_endpoint_events": self.one_endpoint_events, "accounts": self.accounts,
                "load_seconds": self.load_seconds, "load_events_per_second": self.load_rate,
                "load_clients": LOAD_CLIENTS, "backlog_jobs": self.backlog_jobs,
                "pgbench_seconds": self.pgbench_seconds, "phase_timeout_s": self.timeout,
                "worker_args": self.worker_args,
            },
        }

    def setup(self):
        recreate_database(self.server_url, BENCH_DB)
        migrate(self.binary, self.url)
        self.session = PsqlSession(self.url, prefix=TAG + " ")
        # The postmaster, when the server is on this machine: the parent of this session's backend.
        stat = proc_stat(int(self.q("SELECT pg_backend_pid()")[0][0]))
        if stat and proc_stat(stat[0]) and proc_stat(stat[0])[1] == "postgres":
            self.postmaster = stat[0]
        try:  # not on the session: psql ends at an error (ON_ERROR_STOP)
            psql(self.url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT count(*) FROM pg_stat_statements")
        except RunError as error:
            self.statements_error = str(error).splitlines()[0]
            log(f"pg_stat_statements unavailable, so no database time per delivery (scripts/pg loads it with "
                f"PG_TUNING=durable or PG_STAT_STATEMENTS=1): {self.statements_error}")

    def q(self, sql, timeout=60):
        return self.session.query(sql, timeout)

    def queue_depth(self):
        return int(self.q("SELECT count(*) FROM webhook_worker.jobs")[0][0])

    def dead_letters(self):
        return int(self.q("SELECT count(*) FROM webhook_worker.dead_letter_jobs")[0][0])

    def start_workers(self, count, label, extra=(), pooler=None):
        """`count` workers on the bench database; with a `pooler` (PgBouncer) their statements go
        through it, unnamed (--prepared-statements off), and LISTEN straight to PostgreSQL."""
        url, routing = self.url, []
        if pooler is not None:
            url, routing = pooler.url, ["--prepared-statements", "off", "--listen-database-url", self.url]
        return [Worker(self.binary, url, f"{label}-{i + 1}", self.logdir, [*routing, *self.worker_args, *extra])
                for i in range(count)]

    def warm_up(self, workers):
        """One no-op job through the workers, so that timing starts with them connected and idle."""
        self.q("INSERT INTO webhook_worker.jobs (kind, payload) VALUES ('noop', '{\"warm_up\": true}')")
        wait_until("the warm-up job", lambda: self.queue_depth() == 0, 120, workers)
        time.sleep(1.0)

    def check_workers(self, phase, workers, expected=()):
        """Exit 0 and nothing logged at warning or above, except lines holding one of `expected`."""
        for worker in workers:
            if worker.exit_status != 0:
                self.problems.append(f"{phase}: {worker.name} exit status {worker.exit_status}")
            lines = [line for line in worker.log_lines() if not any(e in line for e in expected)]
            if lines:
                self.problems.append(f"{phase}: {worker.name} logged {len(lines)} line(s) at warning or above, "
                                     f"first: {lines[0][:300]}")

    def cpu_meter(self, workers, receiver=None, pooler=None):
        """CPU shares of the phase's workers, the PostgreSQL server (when on this machine: the
        postmaster and its backends), the receiver (nginx) and the pooler (PgBouncer), between
        start() and stop()."""
        groups = {"worker": lambda: [w.pid for w in workers if w.alive()],
                  "postgresql": lambda: process_tree(self.postmaster)}
        if receiver is not None:
            groups["nginx"] = receiver.pids
        if pooler is not None:
            groups["pgbouncer"] = pooler.pids
        return CpuMeter(**groups)

    @contextlib.contextmanager
    def quiet(self):
        """Holds BENCH_LOCK, when it names a file, while a measurement runs: on a machine that
        others share (builds that take the same lock), the figures are then measured alone, and
        long loads that measure nothing can run outside it."""
        path = os.environ.get("BENCH_LOCK", "").strip()
        # A phase inside a phase (pgbouncer's runs) is already measured alone: a second flock on a
        # descriptor of its own would wait for this very process.
        if not path or getattr(self, "_holds_lock", False):
            yield
            return
        with open(path, "a") as lock:  # Python's descriptors are not inherited by children
            log(f"waiting for {path}")
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._holds_lock = True
            try:
                yield
            finally:
                self._holds_lock = False
                fcntl.flock(lock, fcntl.LOCK_UN)

    def repeated(self, function):
        """A throughput phase run BENCH_REPEAT times: the median run's result, with every run's
        rate (figures.median_run). The figures vary by 15 % or more between runs on a small
        machine; one run is not enough to judge a target close to it."""
        return median_run([function() for _ in range(self.repeat)])

    def phase(self, key, function, quiet=True):
        """Runs one phase into results[key]; `quiet=False` for a phase that holds BENCH_LOCK
        itself around its measurements only."""
        try:
            if quiet:
                with self.quiet():
                    self.results[key] = function()
            else:
                self.results[key] = function()
        except RunError as error:
            log(f"{key} FAILED: {error}")
            self.results[key] = {"error": str(error)}
            self.problems.append(f"{key}: {error}".splitlines()[0])
