"""The random faults (kill -9, SIGTERM, backend terminations, the PostgreSQL restart) and the
schedule that injects them around the quiet windows of the phases."""

import time

from ..core import RunError, log
from ..postgres import psql_lines, run_script
from . import phases, replicas
from .cluster import terminate_sql
from .settings import DEGRADE_AFTER, DEGRADE_SECONDS, DEGRADE_SLOW, LISTEN_APP, POOL_APP, stamp


def kill(chaos):
    candidates = replicas.running(chaos)
    if len(candidates) < 2:
        return False
    replica = chaos.rng.choice(candidates)
    t = time.time()
    replica.kill9()
    chaos.kills.append({"worker_id": replica.worker_id, "t": t, "restarted": None})
    replica.restart_at = time.time() + chaos.rng.uniform(0.5, 2.0)
    log(f"{stamp(t)} kill -9 {replica.worker_id}")
    return True


def graceful(chaos):
    # Only replicas up for a while: one that is still starting (connecting, migrating) has
    # not installed its signal handlers yet, and SIGTERM ends it the default way.
    candidates = [r for r in replicas.running(chaos) if time.time() - r.started_at >= 3.0]
    if len(replicas.running(chaos)) < 2 or not candidates:
        return False
    replica = chaos.rng.choice(candidates)
    t = time.time()
    replica.terminate()
    chaos.graceful.append({"worker_id": replica.worker_id, "t": t, "exited": None, "status": None,
                          "seconds": None})
    log(f"{stamp(t)} SIGTERM {replica.worker_id}")
    return True


def terminate_backends(chaos, mode):
    where = {
        "listen": f"application_name = '{LISTEN_APP}'",
        "all": f"application_name IN ('{LISTEN_APP}', '{POOL_APP}')",
        "some": f"application_name IN ('{LISTEN_APP}', '{POOL_APP}') AND random() < 0.5",
    }[mode]
    t = time.time()
    try:
        count = int(psql_lines(chaos.url, terminate_sql(where), timeout=20)[0])
    except RunError as error:
        log(f"{stamp(t)} pg_terminate_backend ({mode}) failed: {error}")
        return False
    chaos.terminations.append({"t": t, "mode": mode, "backends": count})
    log(f"{stamp(t)} pg_terminate_backend: {count} {mode} backend(s)")
    return True


def pg_restart(chaos):
    t0 = time.time()
    log(f"{stamp(t0)} PostgreSQL restart (scripts/pg restart, fast mode)")
    chaos.pg_restart_running = True
    try:
        run_script("pg", "restart", chaos.pg_dir)
    finally:
        chaos.pg_restart_running = False
    t1 = time.time()
    chaos.pg_restarts.append({"t0": t0, "t1": t1, "kind": "restart"})
    log(f"{stamp(t1)} PostgreSQL is back ({t1 - t0:.1f}s)")


def inject(chaos):
    """The random faults for chaos.seconds, with two quiet windows of their own in it: the
    SIGTERM while PostgreSQL is down (at a fifth of the time) and the connect window (at three
    quarters). The time a window takes is added to the run, and the schedule moves with it."""
    start = time.time()
    chaos.receiver.degrade(start + DEGRADE_AFTER, DEGRADE_SECONDS)
    log(f"{stamp()} the degrading endpoint will answer after {DEGRADE_SLOW:.0f}s from "
        f"{stamp(start + DEGRADE_AFTER).strip()} to {stamp(start + DEGRADE_AFTER + DEGRADE_SECONDS).strip()}")
    due = {"end": start + chaos.seconds}
    chaos.pg_restart_running = False
    due["kill"] = start + chaos.rng.uniform(2.0, 4.0)
    due["graceful"] = start + chaos.rng.uniform(5.0, 8.0)
    due["terminate"] = start + chaos.rng.uniform(3.0, 5.0)
    due["restart"] = start + chaos.seconds * chaos.rng.uniform(0.40, 0.55)
    due["pg-down stop"] = start + chaos.seconds * 0.20
    due["connect window"] = start + chaos.seconds * 0.75
    windows = {"pg-down stop": phases.sigterm_pg_down, "connect window": phases.connect_window}
    modes = ["listen", "all", "some"]
    terminate_count = 0
    while time.time() < due["end"]:
        if chaos.inserter_error:
            raise RunError(f"the inserter stopped: {chaos.inserter_error}")
        replicas.manage(chaos)
        now = time.time()
        if due["restart"] is not None and now >= due["restart"]:
            due["restart"] = None
            pg_restart(chaos)
            continue
        phase = next((name for name in windows if due[name] is not None and now >= due[name]), None)
        if phase is not None:
            due[phase] = None
            began = time.time()
            windows[phase](chaos)
            shift = time.time() - began
            for name in due:
                if due[name] is not None:
                    due[name] += shift
            continue
        if now >= due["kill"]:
            # When too few replicas run for one to be spared, try again in a moment.
            due["kill"] = time.time() + (chaos.rng.uniform(3.0, 6.0) if kill(chaos) else 0.5)
        elif now >= due["graceful"]:
            due["graceful"] = time.time() + (chaos.rng.uniform(8.0, 14.0) if graceful(chaos) else 0.5)
        elif now >= due["terminate"]:
            terminate_backends(chaos, modes[terminate_count % len(modes)])
            terminate_count += 1
            due["terminate"] = time.time() + chaos.rng.uniform(4.0, 8.0)
        time.sleep(0.05)
