"""Worker processes: started, stopped together, waited on."""

import os
import signal
import subprocess
import time

from ..core import RunError
from ..processes import log_lines, proc_status_kib, spawn_logged, worker_environment

WORKERS = []  # every worker started, so that the exit handler can stop the ones still running


class Worker:
    def __init__(self, binary, url, name, logdir, extra_args=()):
        self.name = name
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.process = spawn_logged([binary, "run", "--log-level", "warning", "--database-url", url, *extra_args],
                                    self.log_path, worker_environment())
        self.pid = self.process.pid
        self.peak_rss_kib = None
        self.exit_status = None
        self.stop_seconds = None
        WORKERS.append(self)

    def alive(self):
        return self.process.poll() is None

    def read_peak_rss(self):
        value = proc_status_kib(self.pid)
        if value is not None:
            self.peak_rss_kib = value
        return self.peak_rss_kib

    def terminate(self):
        if self.alive():
            self.stop_started = time.monotonic()
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout=60):
        if self.process.poll() is None and not hasattr(self, "stop_started"):
            self.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.exit_status = f"killed: no exit within {timeout}s of SIGTERM"
        else:
            if self.exit_status is None:
                self.exit_status = self.process.returncode
        if hasattr(self, "stop_started"):
            self.stop_seconds = round(time.monotonic() - self.stop_started, 3)

    def log_lines(self):
        return log_lines(self.log_path)

    def summary(self):
        lines = self.log_lines()
        return {
            "pid": self.pid,
            "peak_rss_mib": round(self.peak_rss_kib / 1024, 1) if self.peak_rss_kib else None,
            "exit_status": self.exit_status,
            "seconds_from_sigterm_to_exit": self.stop_seconds,
            "log_lines_at_warning_or_above": len(lines),
            "log_excerpt": lines[:20],
        }


def stop_workers(workers, timeout=60):
    """Reads each worker's peak RSS, then SIGTERMs them together and waits for each."""
    for worker in workers:
        if worker.alive():
            worker.read_peak_rss()
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait_stopped(timeout)


def kill_all_workers():
    for worker in WORKERS:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 40
    for worker in WORKERS:
        try:
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def wait_until(what, check, timeout, workers=(), interval=0.2):
    """Calls check() every `interval` s until it returns a true value; fails on timeout or a dead worker."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        for worker in workers:
            if not worker.alive():
                tail = "\n".join(worker.log_lines()[-10:])
                raise RunError(f"{worker.name} exited ({worker.process.returncode}) while waiting for {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise RunError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
