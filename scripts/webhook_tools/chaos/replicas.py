"""The replicas: one slot each, started again under a new worker id after every stop; noticing
their exits, restarting them, and waiting on them."""

import os
import signal
import subprocess
import time

from ..core import RunError, log
from ..postgres import psql_lines
from ..processes import log_lines, proc_status_kib, spawn_logged, worker_environment
from .settings import CHAOS_DB, GRACEFUL_EXIT_LIMIT, LISTEN_APP, WORKER_FLAGS, stamp

# ---------------------------------------------------------------------------------------------
# Replicas


class Replica:
    """One replica slot; each (re)start is a new generation with its own worker id and log."""

    def __init__(self, chaos, slot):
        self.chaos = chaos
        self.slot = slot
        self.generation = 0
        self.process = None
        self.worker_id = None
        self.log_path = None
        self.state = "down"  # running | stopping (SIGTERM sent) | killed | down
        self.started_at = None
        self.term_sent_at = None
        self.restart_at = None

    def start(self):
        self.generation += 1
        self.worker_id = f"chaos-{self.slot}-{self.generation}"
        self.log_path = os.path.join(self.chaos.logdir, f"{self.worker_id}.log")
        args = [self.chaos.binary, "run", *WORKER_FLAGS, "--worker-id", self.worker_id]
        if self.chaos.worker_url != self.chaos.url:  # CHAOS_PGBOUNCER
            args += ["--prepared-statements", "off", "--listen-database-url", self.chaos.url]
        env = worker_environment(DATABASE_URL=self.chaos.worker_url)
        self.process = spawn_logged(args, self.log_path, env)
        self.state = "running"
        self.started_at = time.time()
        self.term_sent_at = None
        self.restart_at = None
        self.chaos.generations.append({"worker_id": self.worker_id, "pid": self.process.pid,
                                       "started": self.started_at, "log": self.log_path})
        return self.worker_id

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def peak_rss_kib(self):
        """Its peak RSS (VmHWM) while it runs, also kept in chaos.peak_rss."""
        value = proc_status_kib(self.process.pid) if self.alive() else None
        if value is not None:
            self.chaos.peak_rss[self.worker_id] = value
        return value

    def kill9(self):
        self.peak_rss_kib()
        self.process.send_signal(signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.state = "killed"

    def terminate(self):
        self.peak_rss_kib()
        self.process.send_signal(signal.SIGTERM)
        self.state = "stopping"
        self.term_sent_at = time.time()



def running(chaos):
    return [r for r in chaos.replicas if r.state == "running" and r.alive()]


def wait_listening(chaos, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(chaos) >= chaos.replica_count:
            return
        for replica in chaos.replicas:
            if not replica.alive():
                tail = "\n".join(log_lines(replica.log_path)[-10:])
                raise RunError(f"{replica.worker_id} exited ({replica.process.returncode}) at start:\n{tail}")
        time.sleep(0.2)
    raise RunError(f"the replicas did not all connect within {timeout}s")


def manage(chaos, allow_restarts=True):
    """Notices exits, restarts replicas whose pause is over, and kills a hung graceful stop."""
    now = time.time()
    for replica in chaos.replicas:
        if replica.state == "stopping":
            if not replica.alive():
                entry = next(g for g in reversed(chaos.graceful) if g["worker_id"] == replica.worker_id)
                entry["exited"] = now
                entry["status"] = replica.process.returncode
                entry["seconds"] = round(now - entry["t"], 2)
                if replica.process.returncode != 0:
                    chaos.problems["graceful stops exit 0"].append(
                        f"{replica.worker_id} exited {replica.process.returncode} after SIGTERM")
                replica.state = "down"
                replica.restart_at = now + chaos.rng.uniform(0.2, 0.8)
            elif now - replica.term_sent_at > GRACEFUL_EXIT_LIMIT:
                chaos.problems["graceful stops exit 0"].append(
                    f"{replica.worker_id} still running {GRACEFUL_EXIT_LIMIT:.0f}s after SIGTERM; killed")
                replica.process.kill()
                replica.process.wait(timeout=10)
                entry = next(g for g in reversed(chaos.graceful) if g["worker_id"] == replica.worker_id)
                entry["exited"], entry["status"] = now, "hung"
                replica.state = "down"
                replica.restart_at = now + 0.5
        elif replica.state == "running" and not replica.alive():
            status = replica.process.returncode
            lines = log_lines(replica.log_path)
            in_outage = any(p["t0"] - 5 <= replica.started_at <= p["t1"] + 2 for p in chaos.pg_restarts) or \
                chaos.pg_restart_running
            if status == 1 and in_outage and len(lines) <= 3:
                chaos.start_refusals.append(replica.worker_id)
                log(f"{stamp()} {replica.worker_id} could not start while PostgreSQL restarted (exit 1); restarting")
            else:
                chaos.unexpected_exits.append({"worker_id": replica.worker_id, "status": status, "t": now})
                chaos.problems["no replica exits on its own"].append(
                    f"{replica.worker_id} exited by itself with status {status}; log tail: "
                    + " | ".join(lines[-5:])[-600:])
                log(f"{stamp()} UNEXPECTED: {replica.worker_id} exited with status {status}")
            replica.state = "down"
            replica.restart_at = now + 0.3
        if replica.state in ("down", "killed") and allow_restarts and replica.restart_at is not None \
                and now >= replica.restart_at:
            if replica.state == "killed":
                for k in chaos.kills:
                    if k["worker_id"] == replica.worker_id:
                        k["restarted"] = now
            old = replica.worker_id
            new = replica.start()
            log(f"{stamp()} restarted {old} as {new}")


def listening(chaos):
    return int(psql_lines(chaos.url, f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{CHAOS_DB}' "
                                    f"AND application_name = '{LISTEN_APP}'")[0])


def pause(chaos, seconds, allow_restarts=True):
    """Waits, still noticing exits (and restarting replicas, unless told not to)."""
    end = time.time() + seconds
    while time.time() < end:
        manage(chaos, allow_restarts=allow_restarts)
        time.sleep(min(0.05, max(0.0, end - time.time())))


def wait_quiet(chaos, every_replica, timeout=20.0, uptime=3.0):
    """Before a phase: replicas up for `uptime` seconds (their signal handlers installed):
    every replica and each one listening (every_replica), or else at least two running and
    one of them up that long. False when that did not happen within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if chaos.inserter_error:
            raise RunError(f"the inserter stopped: {chaos.inserter_error}")
        manage(chaos)
        now = time.time()
        settled = [r for r in running(chaos) if now - r.started_at >= uptime]
        if every_replica:
            if len(settled) == chaos.replica_count and listening(chaos) >= chaos.replica_count:
                return True
        elif len(running(chaos)) >= 2 and settled:
            return True
        time.sleep(0.1)
    return False


def wait_exit(chaos, replica, since, limit, tick):
    """Waits, `tick` seconds at a time, until the replica exits or `limit` seconds have passed
    since `since`, noticing other replicas' exits meanwhile (none restarted). True when it
    exited."""
    while time.time() - since < limit and replica.process.poll() is None:
        manage(chaos, allow_restarts=False)
        try:
            replica.process.wait(timeout=tick)
        except subprocess.TimeoutExpired:
            pass
    return replica.process.poll() is not None
