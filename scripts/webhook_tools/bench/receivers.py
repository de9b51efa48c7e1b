"""The receivers: nginx for throughput, the worker's own receiver where arrivals are needed as
they happen, and an endpoint that never answers; PgBouncer's version."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from ..core import RunError
from ..loopback import LoopbackServer, QuietHandler
from ..processes import end_process
from .cpu import process_tree
from .figures import tally


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]



def pgbouncer_version():
    """`pgbouncer --version`'s first line, None when it cannot be run."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True,
                              timeout=10).stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None

class HangingServer:
    """An endpoint that reads each request and never answers: it holds the request until the
    client closes the connection. Counts requests and the most open at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.open = self.peak = self.requests = 0
        hanging = self

        class Handler(QuietHandler):
            def do_POST(self):
                body, length = self.read_body()
                self.close_connection = True
                if len(body) < length:
                    return  # the client went away mid-body
                with hanging.lock:
                    hanging.requests += 1
                    hanging.open += 1
                    hanging.peak = max(hanging.peak, hanging.open)
                try:
                    self.hold_until_closed()
                finally:
                    with hanging.lock:
                        hanging.open -= 1

        self.server = LoopbackServer(Handler)
        self.port = self.server.port

    def open_now(self):
        with self.lock:
            return self.open

    def close(self):
        self.server.close()


class Receiver:
    """The worker's own receiver (`webhook-worker receive --quiet`, a SwiftNIO server): HTTP/1.1
    keep-alive, 200 at once, one line per request with its arrival time (Unix seconds), delivery
    id and connection number, as it arrives. Only the isolation phase uses it: throughput goes to
    nginx, which costs less."""

    def __init__(self, binary):
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "receive", "--quiet", "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.arrivals, self.lock, self.count = {}, threading.Lock(), 0
        ready = self.process.stderr.readline()
        if "receiving" not in ready:
            raise RunError(f"receiver did not start: {ready.strip()}")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            parts = line.split()
            if len(parts) != 3:
                continue
            with self.lock:
                self.count += 1
                self.arrivals.setdefault(parts[1], float(parts[0]))

    def snapshot(self):
        """(first arrival per delivery id, requests)."""
        with self.lock:
            return dict(self.arrivals), self.count

    def close(self):
        end_process(self.process)
        self.thread.join(timeout=5)


class Nginx:
    """Debian's nginx as the throughput receiver: `return 204` on 127.0.0.1:<free port>, HTTP/1.1
    keep-alive (a connection lives for the whole phase), one worker process. Started by the bench
    as a process of its own (not the system service), with its configuration, pid file, logs and
    temporary folders in a folder under the bench's log folder, so nothing under /var is needed.
    The access log (buffered: next to no cost per request) has one line per request: arrival
    time (Unix seconds, millisecond resolution), delivery id, connection number, status."""

    FORMAT = "$msec $http_x_webhook_delivery $connection $status"

    def __init__(self, logdir):
        binary = shutil.which("nginx") or next((b for b in ("/usr/sbin/nginx",) if os.access(b, os.X_OK)), None)
        if not binary:
            raise RunError("nginx not found: `make bench` installs it (NEED_NGINX=1 scripts/ensure-deps), "
                             "or apt-get install nginx")
        self.dir = tempfile.mkdtemp(prefix="nginx-", dir=logdir)
        self.port = free_port()
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        temp_paths = "".join(f"    {kind}_temp_path {self.dir}/{kind}_temp;\n"
                             for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        config = os.path.join(self.dir, "nginx.conf")
        with open(config, "w") as f:
            f.write(f"""worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 4096; }}
http {{
    log_format bench '{self.FORMAT}';
    access_log {self.access_log} bench buffer=256k flush=10s;
{temp_paths}    keepalive_timeout 300s;
    keepalive_requests 100000000;
    server {{
        listen 127.0.0.1:{self.port};
        location / {{ return 204; }}
    }}
}}
""")
        # -e: the error log before the configuration is read (the compiled-in one may be under /var).
        self.process = subprocess.Popen(
            [binary, "-p", self.dir, "-c", config, "-e", self.error_log, "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.error_log, "a"))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RunError(f"nginx did not start on port {self.port}: {self._errors()}")
                time.sleep(0.05)

    def _errors(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read().strip()[-500:]
        except OSError:
            return ""

    def pids(self):
        return process_tree(self.process.pid) if self.process.poll() is None else []

    def close(self):
        """Graceful stop (SIGQUIT), which writes out the access log's buffer."""
        end_process(self.process, signal.SIGQUIT, timeout=15)

    def requests(self):
        """Once closed: [(arrival, delivery id, connection number, status)] from the access log."""
        rows = []
        try:
            with open(self.access_log) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 4:
                        rows.append((float(parts[0]), parts[1], int(parts[2]), int(parts[3])))
        except OSError:
            pass
        return rows

    def tally(self):
        """Once closed: (first arrival per delivery id, requests, TCP connections, non-204 answers)."""
        return tally(self.requests())
