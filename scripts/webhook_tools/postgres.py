"""PostgreSQL for the tools: psql (one-off and as a session), the databases they create,
`webhook-worker migrate`, scripts/pg and scripts/pgbouncer."""

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .core import ROOT, RunError
from .processes import end_process


def with_dbname(url, dbname):
    """DATABASE_URL (URI or key=value conninfo) pointed at another database on the same server."""
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "dbname"])
        return urlunsplit(parts._replace(path="/" + dbname, query=query))
    return f"{url} dbname={dbname}"  # in a conninfo string the last dbname wins


def psql_command(url, *extra):
    """psql unaligned, tuples only, no psqlrc, stopping at the first error."""
    return ["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *extra]


def psql_lines(url, sql, timeout=60):
    """Runs SQL (one statement or a script) in a psql of its own; its non-empty output lines
    (columns separated by |)."""
    try:
        done = subprocess.run(psql_command(url, "-f", "-"), input=sql, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunError(f"psql did not finish within {timeout}s: {sql.strip()[:200]}")
    if done.returncode != 0:
        raise RunError(f"psql failed ({done.returncode}): {done.stderr.strip()[:500]}\nSQL: {sql.strip()[:300]}")
    return [line for line in done.stdout.splitlines() if line != ""]


def psql_json(url, select, timeout=120):
    """The rows of a SELECT as a list of dicts (through json_agg)."""
    lines = psql_lines(url, f"SELECT coalesce(json_agg(t), '[]'::json) FROM ({select}) t", timeout)
    return json.loads("".join(lines)) if lines else []


class PsqlSession:
    """One persistent psql connection, for statements in a row without a process each (polling,
    an inserter, a transaction held open). `prefix` leads every statement. Any error ends the
    session (ON_ERROR_STOP), and so does close(); the caller opens a new one."""

    END = "__harness_end__"

    def __init__(self, url, prefix="", timeout=60):
        self.prefix, self.timeout = prefix, timeout
        self.errors = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(psql_command(url), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.errors, text=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def query(self, sql, timeout=None):
        """Runs one statement (or several separated by ;); its rows as lists of strings. Fails
        after `timeout` seconds (the session's default when None)."""
        timeout = self.timeout if timeout is None else timeout
        try:
            self.process.stdin.write(f"{self.prefix}{sql.strip().rstrip(';')};\n\\echo {self.END}\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise RunError("psql session ended: " + self.stderr())
        rows = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RunError(f"no answer within {timeout}s: {sql.strip()[:200]}")
            if line is None:
                raise RunError("psql session ended: " + self.stderr())
            if line == self.END:
                return rows
            if line != "":
                rows.append(line.split("|"))

    def stderr(self):
        """The end of what psql wrote to standard error, on one line."""
        try:
            self.errors.seek(0)
            return " ".join(self.errors.read().split())[-500:]
        except (OSError, ValueError):
            return ""

    def close(self):
        try:
            self.process.stdin.close()
        except OSError:
            pass
        end_process(self.process, sig=None, timeout=5)
        self.errors.close()


def recreate_database(server_url, name, force=False):
    """Drops database `name` if it exists (its sessions terminated with `force`) and creates it."""
    drop_database(server_url, name, force)
    psql_lines(server_url, f'CREATE DATABASE "{name}"')


def drop_database(server_url, name, force=False):
    psql_lines(server_url, f'DROP DATABASE IF EXISTS "{name}"' + (" WITH (FORCE)" if force else ""))


def migrate(binary, url):
    """`webhook-worker migrate` on `url`."""
    done = subprocess.run([binary, "migrate", "--log-level", "warning", "--database-url", url],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RunError(f"webhook-worker migrate failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def load_app_tables(url):
    """The web app's tables (sql/dev/001_app_tables.sql)."""
    with open(os.path.join(ROOT, "sql", "dev", "001_app_tables.sql")) as sql:
        psql_lines(url, sql.read())


def run_script(name, *args, timeout=120, env=None):
    """Runs scripts/NAME with `args` from the checkout's root; the last line of its standard
    output (the URI that `scripts/pg start` and `scripts/pgbouncer start` print), "" when none."""
    what = f"scripts/{name} {args[0]}" if args else f"scripts/{name}"
    try:
        done = subprocess.run([os.path.join(ROOT, "scripts", name), *args], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        raise RunError(f"{what} did not finish within {timeout}s")
    if done.returncode != 0:
        raise RunError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


class PgBouncer:
    """PgBouncer in transaction pooling mode in front of `upstream_url` (a postgresql:// URI) with
    `pool_size` server connections, started by scripts/pgbouncer in .pg/NAME-pgbouncer-PID of
    this checkout. close() destroys it; close_all() every one not yet destroyed."""

    started = []

    def __init__(self, upstream_url, pool_size, name):
        self.dir = os.path.join(ROOT, ".pg", f"{name}-pgbouncer-{os.getpid()}")
        PgBouncer.started.append(self)  # before it starts, so that an interrupted start is cleaned up
        self.url = run_script("pgbouncer", "start", self.dir, upstream_url, timeout=60,
                              env={**os.environ, "PGBOUNCER_POOL_SIZE": str(pool_size)})
        if not self.url:
            raise RunError("scripts/pgbouncer start printed no URI")

    def pids(self):
        """PgBouncer's pid while it runs, for CPU accounting."""
        try:
            with open(os.path.join(self.dir, "pgbouncer.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return []
        return [pid] if os.path.exists(f"/proc/{pid}") else []

    def close(self, keep_logs_in=None):
        """Destroys it, first copying its logs into the folder `keep_logs_in` when given."""
        if not os.path.isdir(self.dir):
            return
        for name in ("pgbouncer.log", "start.log"):
            path = os.path.join(self.dir, name)
            if keep_logs_in and os.path.exists(path):
                shutil.copyfile(path, os.path.join(keep_logs_in, name))
        subprocess.run([os.path.join(ROOT, "scripts", "pgbouncer"), "destroy", self.dir], capture_output=True,
                       timeout=60, cwd=ROOT)

    @classmethod
    def close_all(cls, keep_logs_in=None):
        for pooler in cls.started:
            pooler.close(keep_logs_in)


