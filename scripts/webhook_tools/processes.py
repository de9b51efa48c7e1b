"""Worker processes and their logs."""

import os
import signal
import subprocess

from .core import ROOT

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


