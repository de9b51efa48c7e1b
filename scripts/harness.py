"""What scripts/chaos and scripts/bench share: settings from the environment, psql (one-off and
as a session), the databases they create, scripts/pg and scripts/pgbouncer, worker processes and
their logs, a loopback HTTP server for receivers, a sampler of deliveries in flight per endpoint,
and percentiles.

Both scripts are executable files without a .py suffix; each puts its own folder first on
sys.path and imports this module. Python's standard library only.
"""

import collections
import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# How error messages name the script: scripts/chaos or scripts/bench.
PROGRAM = "scripts/" + os.path.basename(sys.argv[0])


class RunError(Exception):
    """The run, or one of its phases, could not complete; the message says why."""


def log(message):
    """A progress line on standard error."""
    print(f"==> {message}", file=sys.stderr, flush=True)


def setup_process():
    """Runs from the checkout's root, and turns SIGTERM and SIGHUP into SystemExit(128 + signal),
    so that the scripts' finally blocks stop what they started."""
    os.chdir(ROOT)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


# ---------------------------------------------------------------------------------------------
# Settings


def settings_error(message):
    """Bad settings: one line naming the script, exit status 2."""
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    sys.exit(2)


def env_int(name, default, minimum=1):
    """An integer setting: `default` when unset or blank, else an integer >= `minimum`."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        settings_error(f"invalid {name} '{text}': expected an integer >= {minimum}")
    return value


def env_flag(name):
    """An on/off setting: on unless unset, empty or 0."""
    return os.environ.get(name, "") not in ("", "0")


def worker_binary():
    """WEBHOOK_WORKER_BIN (default .build/release/webhook-worker, relative to the checkout), as an
    absolute path; exits 2 when it is not executable."""
    binary = os.environ.get("WEBHOOK_WORKER_BIN", "").strip() or ".build/release/webhook-worker"
    binary = os.path.abspath(os.path.join(ROOT, binary))
    if not os.access(binary, os.X_OK):
        settings_error(f"no executable at {binary} (swift build -c release, or set WEBHOOK_WORKER_BIN)")
    return binary


# ---------------------------------------------------------------------------------------------
# Statistics


def percentile(values, p):
    """The p-th percentile, interpolated linearly between closest ranks (numpy's default); None
    for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# ---------------------------------------------------------------------------------------------
# PostgreSQL


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


# ---------------------------------------------------------------------------------------------
# Processes


# What the worker reads from its environment: the harnesses give it flags instead, so that a
# WORKER_CONCURRENCY or OTEL_EXPORTER_OTLP_ENDPOINT left in the caller's shell cannot change a run.
WORKER_SETTING_PREFIXES = ("WORKER_", "WEBHOOK_", "LOG_", "OTEL_")


def worker_environment(**overrides):
    """This process's environment without the worker's settings, then `overrides`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(WORKER_SETTING_PREFIXES)}
    # The harnesses seed integration accounts in bulk and send their events themselves: the
    # catch-up would enqueue events for the accounts they left alone, which both count as wrong.
    env["WEBHOOK_CATCH_UP_INTERVAL"] = "off"
    env.update(overrides)
    return env


def spawn_logged(args, log_path, env=None):
    """Starts a process (a worker) with nothing on standard input and its standard output and
    error in a new file at `log_path`."""
    with open(log_path, "w") as log_file:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT)


def end_process(process, sig=signal.SIGTERM, timeout=10):
    """Sends `sig` (nothing when None) to a process still running, waits up to `timeout` seconds
    for it to exit, then kills it. True when it exited by itself."""
    if process.poll() is None and sig is not None:
        process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


def proc_status_kib(pid, field="VmHWM"):
    """A memory figure in KiB from /proc/PID/status: VmHWM (peak RSS) or VmRSS; None when the
    process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def log_lines(path):
    """The non-blank lines of a log file; none when it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except OSError:
        return []


# ---------------------------------------------------------------------------------------------
# Receivers


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 at a free port (`port`), a thread per connection, serving from
    a thread of its own from construction until close(). Errors of connections that the client
    reset or gave up on are what these receivers expect, so they are not printed."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, handler_class):
        super().__init__(("127.0.0.1", 0), handler_class)
        self.port = self.server_address[1]
        self.stopping = threading.Event()  # ends the requests held by QuietHandler.hold_until_closed
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()

    def handle_error(self, request, client_address):
        pass

    def close(self):
        self.stopping.set()
        self.shutdown()
        self.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler for LoopbackServer: HTTP/1.1 keep-alive, no request log."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        """(the body read, the Content-Length announced); the body is shorter when the client
        went away mid-body."""
        length = int(self.headers.get("Content-Length") or 0)
        return (self.rfile.read(length) if length else b""), length

    def hold_until_closed(self, limit=None):
        """Never answers: holds the request until the client closes the connection (gives up),
        the server closes, or `limit` seconds pass."""
        sock = self.connection
        deadline = None if limit is None else time.monotonic() + limit
        while not self.server.stopping.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable and not sock.recv(4096):
                    return  # end of stream: the client gave up
            except (OSError, ValueError):
                return


# ---------------------------------------------------------------------------------------------
# Deliveries in flight per endpoint


class EndpointSampler:
    """Every INTERVAL seconds, on a psql session of its own (reopened after an outage): the
    running jobs per concurrency_key (for webhook.deliver, the endpoint: 'client:<id>') and each
    endpoint's circuit state (webhook_worker.endpoints). Keeps each key's peak (`peak`, when
    first reached in `peak_at`) and how often each circuit was seen opening (`opened`)."""

    INTERVAL = 0.05
    QUERY = """
        SELECT json_build_object(
            'running', coalesce((SELECT json_object_agg(k, n) FROM (
                SELECT concurrency_key AS k, count(*) AS n FROM webhook_worker.jobs
                WHERE state = 'running' AND concurrency_key IS NOT NULL GROUP BY 1) x), '{}'::json),
            'circuits', coalesce((SELECT json_object_agg(key, state) FROM webhook_worker.endpoints), '{}'::json))"""

    def __init__(self, url):
        self.url = url
        self.stop = threading.Event()
        self.samples = 0
        self.failures = 0                       # queries that failed (PostgreSQL restarting)
        self.longest_gap = 0.0
        self.peak = collections.Counter()       # key -> most running at once
        self.peak_at = {}                       # key -> when first seen
        self.opened = collections.Counter()     # key -> times seen going from another state to open
        self.finished = None
        self._last_state = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        session = None
        last = time.time()
        while not self.stop.is_set():
            began = time.time()
            try:
                if session is None:
                    session = PsqlSession(self.url, timeout=5)
                rows = session.query(self.QUERY)
                sample = json.loads("|".join(rows[0]))
            except (RunError, ValueError, IndexError):
                self.failures += 1
                if session is not None:
                    session.close()
                    session = None
                self.stop.wait(0.2)
                continue
            now = time.time()
            self.longest_gap = max(self.longest_gap, now - last)
            last = now
            self.samples += 1
            for key, n in sample["running"].items():
                if n > self.peak[key]:
                    self.peak[key] = n
                    self.peak_at[key] = now
            for key, state in sample["circuits"].items():
                if state == "open" and self._last_state.get(key) != "open":
                    self.opened[key] += 1
                self._last_state[key] = state
            self.stop.wait(max(0.0, self.INTERVAL - (time.time() - began)))
        if session is not None:
            session.close()

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=15)
        self.finished = time.time()
