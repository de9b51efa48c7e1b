"""The phases with checks of their own, each run with no random fault injected during it: the
table lock, SIGTERM while PostgreSQL is down, and the connect window."""

import random
import signal
import time

from ..core import RunError, log
from ..postgres import PsqlSession, run_script
from . import cluster, replicas
from .cluster import terminate_sql
from .inserter import insert_statement
from .settings import (
    CHAOS_DB,
    CONNECT_WINDOW,
    CONNECT_WINDOW_AGE,
    CONNECT_WINDOW_TICK,
    CONNECT_WINDOW_WATCH,
    GRACEFUL_EXIT_LIMIT,
    LEASE,
    LOCK_EVENTS,
    LOCK_LEASES,
    LOCK_SETTLE_TIMEOUT,
    PG_DOWN_EXIT_LIMIT,
    POOL_APP,
    stamp,
)


def table_lock(chaos):
    """Fault 1, before the inserter and the random faults: the web app holds ACCESS
    EXCLUSIVE on "OAuthClient" (in a transaction of its own psql session) for three leases
    while LOCK_EVENTS events arrive; the fan-out of each reads that table, so every handler
    waits the lock out. Then waits until the queue is empty and nothing is pending."""
    hold = LOCK_LEASES * LEASE
    rng = random.Random(chaos.seed + 3)
    phase = chaos.lock_phase = {"jobs": [], "t0": None, "t1": None, "held": None, "waiting": None,
                               "settled": None, "settled_at": None,
                               "lingering": 0}
    log(f"{stamp()} lock phase: LOCK TABLE \"OAuthClient\" IN ACCESS EXCLUSIVE MODE for {hold:.0f}s "
        f"({LOCK_LEASES} leases) while {LOCK_EVENTS} events arrive")
    locker = PsqlSession(chaos.url, timeout=10)
    session = PsqlSession(chaos.url, timeout=10)
    try:
        locker.query("SET lock_timeout = '5s'")
        locker.query('BEGIN; LOCK TABLE "OAuthClient" IN ACCESS EXCLUSIVE MODE')
        phase["t0"] = time.time()
        # The events arrive over the first third of the hold, so each waits two leases or more.
        spacing = hold / 3 / LOCK_EVENTS
        for seq in range(1, LOCK_EVENTS + 1):
            account, user = rng.choice(chaos.accounts)
            rows = session.query(insert_statement(seq, account, user))
            if not rows:
                raise RunError(f"lock phase: the insert of event {seq} returned no row")
            chaos.inserted.append((seq, int(rows[0][0])))
            phase["jobs"].append(int(rows[0][0]))
            replicas.pause(chaos, spacing)
        chaos.seq_base = LOCK_EVENTS
        replicas.pause(chaos, phase["t0"] + hold - 0.3 - time.time())
        phase["waiting"] = int(session.query(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{CHAOS_DB}' "
            f"AND application_name LIKE '{POOL_APP}%' AND wait_event_type = 'Lock'")[0][0])
        replicas.pause(chaos, phase["t0"] + hold - time.time())
        locker.query("COMMIT")
        phase["t1"] = time.time()
    except RunError as error:
        raise RunError(f"lock phase: {error}")
    finally:
        locker.close()
        session.close()
    phase["held"] = phase["t1"] - phase["t0"]
    log(f"{stamp(phase['t1'])} lock released after {phase['held']:.2f}s; {phase['waiting']} replica "
        f"connection(s) were waiting on it; waiting for the {LOCK_EVENTS} events' jobs to finish")
    deadline = time.monotonic() + LOCK_SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        replicas.manage(chaos)
        queue_state = cluster.queue_state(chaos)
        if queue_state["unsettled"] == 0:
            phase["settled"] = time.time() - phase["t1"]
            phase["settled_at"] = time.time()
            phase["lingering"] = queue_state["held"]
            log(f"{stamp()} lock phase done: its jobs finished {phase['settled']:.1f}s after the lock went"
                + (f" ({queue_state['held']} deliveries held by the open circuits of "
                   f"{', '.join(cluster.held_clients(chaos))}; they go on)" if queue_state["held"] else ""))
            return
        time.sleep(0.25)
    log(f"{stamp()} lock phase: its jobs had not finished {LOCK_SETTLE_TIMEOUT:.0f}s after the lock went")


def sigterm_pg_down(chaos):
    """Fault 2: PostgreSQL stopped (scripts/pg stop, fast mode), then SIGTERM to one replica;
    it must exit 0 within PG_DOWN_EXIT_LIMIT. Then PostgreSQL starts again (same port) and the
    replica is restarted, as after any graceful stop. Recorded as a PostgreSQL outage (it
    explains lost attempts) and as a graceful stop (it explains released ones)."""
    if not replicas.wait_quiet(chaos, every_replica=False):
        raise RunError("SIGTERM phase: no replica up for 3s to stop")
    now = time.time()
    replica = random.Random(chaos.seed + 4).choice([r for r in replicas.running(chaos) if now - r.started_at >= 3.0])
    phase = chaos.pg_down_stop = {"worker_id": replica.worker_id, "status": None, "seconds": None,
                                 "late_status": None, "late_seconds": None, "pg_down": None}
    t0 = time.time()
    log(f"{stamp(t0)} PostgreSQL stop (scripts/pg stop, fast mode), then SIGTERM {replica.worker_id}")
    chaos.pg_restart_running = True
    try:
        run_script("pg", "stop", chaos.pg_dir)
        replica.peak_rss_kib()
        replica.process.send_signal(signal.SIGTERM)
        sent = time.time()
        replica.state = "stopping (PostgreSQL down)"  # watched here, not by manage_replicas
        replica.term_sent_at = sent
        entry = {"worker_id": replica.worker_id, "t": sent, "exited": None, "status": None, "seconds": None}
        chaos.graceful.append(entry)
        log(f"{stamp(sent)} PostgreSQL is down; SIGTERM {replica.worker_id}")
        if replicas.wait_exit(chaos, replica, sent, PG_DOWN_EXIT_LIMIT, 0.02):
            phase["status"], phase["seconds"] = replica.process.returncode, time.time() - sent
            log(f"{stamp()} {replica.worker_id} exited {phase['status']} {phase['seconds']:.2f}s after SIGTERM")
        else:
            log(f"{stamp()} {replica.worker_id} still running {PG_DOWN_EXIT_LIMIT:.1f}s after SIGTERM")
    finally:
        try:
            back, start_error = run_script("pg", "start", chaos.pg_dir), None
        except RunError as error:
            back, start_error = None, error
        chaos.pg_restart_running = False
    t1 = time.time()
    phase["pg_down"] = t1 - t0
    chaos.pg_restarts.append({"t0": t0, "t1": t1, "kind": "stop/start"})
    if start_error is not None:
        raise start_error
    if back != chaos.server_url:
        raise RunError(f"PostgreSQL came back at {back} instead of {chaos.server_url}")
    log(f"{stamp(t1)} PostgreSQL is back ({t1 - t0:.1f}s)")
    if phase["status"] is None:
        # Not gone while PostgreSQL was down: give it the rest of the usual graceful limit.
        if not replicas.wait_exit(chaos, replica, sent, GRACEFUL_EXIT_LIMIT, 0.05):
            replica.process.kill()
            replica.process.wait(timeout=10)
            phase["late_status"] = "hung"
            log(f"{stamp()} {replica.worker_id} still running {GRACEFUL_EXIT_LIMIT:.0f}s after SIGTERM; killed")
        else:
            phase["late_status"], phase["late_seconds"] = replica.process.returncode, time.time() - sent
            log(f"{stamp()} {replica.worker_id} exited {phase['late_status']} {phase['late_seconds']:.2f}s "
                f"after SIGTERM, once PostgreSQL was back")
    entry["exited"] = time.time()
    entry["status"] = phase["status"] if phase["status"] is not None else phase["late_status"]
    entry["seconds"] = round(phase["seconds"] if phase["seconds"] is not None
                             else (phase["late_seconds"] or entry["exited"] - sent), 2)
    replica.state = "down"
    replica.restart_at = time.time() + 0.3


def connect_window(chaos):
    """Fault 3: for CONNECT_WINDOW seconds, every CONNECT_WINDOW_TICK, terminate the replicas'
    backends opened less than CONNECT_WINDOW_AGE ago: connections die right after
    authentication, before or at their first statement. All of the replicas' backends are
    terminated once at the start to force reconnects. No replica is restarted during the window
    and the CONNECT_WINDOW_WATCH seconds after it, so any exit there is a crash."""
    if not replicas.wait_quiet(chaos, every_replica=True, uptime=2.0):
        log(f"{stamp()} connect window: not every replica was up and listening; going ahead")
    phase = chaos.connect_window = {"t0": None, "t1": None, "watched_until": None, "initial": 0, "fresh": 0,
                                   "queries": 0, "running": [r.worker_id for r in replicas.running(chaos)],
                                   "listening_after": None}
    all_sql = terminate_sql(f"application_name LIKE '{POOL_APP}%'")
    fresh_sql = terminate_sql(f"application_name LIKE '{POOL_APP}%' "
                              f"AND backend_start > clock_timestamp() - interval '{CONNECT_WINDOW_AGE}'")
    session = PsqlSession(chaos.url, timeout=10)
    try:
        session.query("SELECT 1")
        t0 = phase["t0"] = time.time()
        log(f"{stamp(t0)} connect window: terminating the replicas' backends, then every new one, "
            f"for {CONNECT_WINDOW:.0f}s")
        phase["initial"] = int(session.query(all_sql)[0][0])
        chaos.terminations.append({"t": time.time(), "mode": "all", "backends": phase["initial"]})
        tick = time.time()
        managed = 0.0
        while time.time() < t0 + CONNECT_WINDOW:
            count = int(session.query(fresh_sql)[0][0])
            phase["queries"] += 1
            if count:
                phase["fresh"] += count
                chaos.terminations.append({"t": time.time(), "mode": "fresh", "backends": count})
            if time.time() - managed >= 0.1:
                replicas.manage(chaos, allow_restarts=False)
                managed = time.time()
            tick += CONNECT_WINDOW_TICK
            delay = tick - time.time()
            if delay > 0:
                time.sleep(delay)
            else:
                tick = time.time()
        phase["t1"] = time.time()
    except RunError as error:
        raise RunError(f"connect window: {error}")
    finally:
        session.close()
    replicas.pause(chaos, CONNECT_WINDOW_WATCH, allow_restarts=False)
    phase["watched_until"] = time.time()
    phase["listening_after"] = replicas.listening(chaos)
    log(f"{stamp(phase['t1'])} connect window over: {phase['initial']} + {phase['fresh']} fresh backend(s) "
        f"terminated in {phase['queries']} queries; {phase['listening_after']} replica(s) listening "
        f"{CONNECT_WINDOW_WATCH:.0f}s later")
