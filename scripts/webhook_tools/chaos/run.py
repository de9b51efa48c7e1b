"""The chaos run's state (settings, the replicas, the fault log, the phases' records) and its
order: cluster, receiver, replicas, the lock phase, faults and inserts, the drain, the checks."""

import collections
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time

from ..core import ROOT, RunError, env_flag, env_int, log, settings_error, setup_process, worker_binary
from ..postgres import PgBouncer, drop_database, psql_json, run_script
from ..processes import end_process
from ..sampler import EndpointSampler
from . import cluster, drain, faults, inserter, phases, replicas
from .analysis import analyse
from .receiver import Receiver
from .replicas import Replica
from .settings import CHAOS_DB, stamp


class Chaos:
    """What the run knows: its settings, the seeded clients (cluster.seed), the replicas, and the
    fault log the analysis reads. The steps are functions of it, in the modules beside this one."""

    def __init__(self):
        self.binary = worker_binary()
        self.seconds = env_int("CHAOS_SECONDS", 60, 10)
        self.replica_count = env_int("CHAOS_REPLICAS", 3, 2)
        self.drain_timeout = env_int("CHAOS_DRAIN_TIMEOUT", 120, 10)
        seed_text = os.environ.get("CHAOS_SEED", "").strip()
        if seed_text:
            try:
                self.seed = int(seed_text)
            except ValueError:
                settings_error(f"invalid CHAOS_SEED '{seed_text}': expected an integer")
        else:
            self.seed = random.SystemRandom().randrange(1, 2**31)
        self.keep_logs = env_flag("CHAOS_KEEP_LOGS")
        given_dir = os.environ.get("CHAOS_PG_DIR", "").strip()
        self.own_cluster = not given_dir
        self.pg_dir = given_dir or os.path.join(ROOT, ".pg", f"chaos-{os.getpid()}")
        self.rng = random.Random(self.seed)
        self.started_at = time.time()
        self.logdir = tempfile.mkdtemp(prefix="webhook-worker-chaos-")
        self.url = None
        self.server_url = None
        self.pgbouncer = env_flag("CHAOS_PGBOUNCER")
        self.worker_url = None   # the replicas' --database-url: self.url, or PgBouncer's in front of it
        self.receiver = None
        self.replicas = []
        self.generations = []
        self.peak_rss = {}
        # The fault log.
        self.kills = []          # {"worker_id", "t", "restarted"}
        self.graceful = []       # {"worker_id", "t", "exited", "status", "seconds"}
        self.terminations = []   # {"t", "mode", "backends"}
        self.pg_restarts = []    # {"t0", "t1", "kind"}: "restart", or "stop/start" (the SIGTERM phase)
        self.unexpected_exits = []
        self.start_refusals = []
        self.problems = collections.defaultdict(list)  # replica-level violations
        self.pg_restart_running = False
        self.drain_seconds = None
        self.drained = False
        # The inserter.
        self.inserted = []       # (seq, job_id)
        self.insert_failures = 0
        self.insert_outage = 0.0
        self.stop_inserting = threading.Event()
        self.inserter_error = None
        self.seq_base = 0        # events inserted before the inserter starts (the lock phase's)
        # The three phases with checks of their own (None until run).
        self.lock_phase = None
        self.pg_down_stop = None
        self.connect_window = None
        # Endpoint isolation.
        self.sampler = None
        self.operator = None


def run(chaos):
    log(f"seed {chaos.seed} (CHAOS_SEED={chaos.seed} repeats this fault schedule); {chaos.seconds}s of faults; "
        f"binary {chaos.binary}; worker logs in {chaos.logdir}")
    cluster.start_cluster(chaos)
    chaos.receiver = Receiver(random.Random(chaos.seed + 2), {})
    cluster.seed(chaos)
    chaos.replicas = [Replica(chaos, n) for n in range(1, chaos.replica_count + 1)]
    for replica in chaos.replicas:
        replica.start()
    replicas.wait_listening(chaos)
    log(f"{stamp()} {chaos.replica_count} replicas listening")
    chaos.sampler = EndpointSampler(chaos.url)
    chaos.sampler.start()
    phases.table_lock(chaos)
    log(f"{stamp()} inserting and injecting faults for {chaos.seconds}s")
    insert_thread = threading.Thread(target=inserter.insert_loop, args=(chaos,), daemon=True)
    insert_thread.start()
    try:
        faults.inject(chaos)
    finally:
        chaos.stop_inserting.set()
        insert_thread.join(timeout=100)
    if insert_thread.is_alive():
        raise RunError("the inserter did not stop within 100s")
    if chaos.inserter_error:
        raise RunError(f"the inserter stopped: {chaos.inserter_error}")
    log(f"{stamp()} faults and inserts stopped ({len(chaos.inserted)} events inserted); waiting for the queue to drain")
    chaos.drained = drain.drain(chaos)
    if not chaos.sampler.stop.is_set():
        chaos.sampler.finish()
    chaos.leftovers = psql_json(chaos.url, """
        SELECT id, kind, state, attempt, locked_by, extract(epoch FROM locked_until)::float8 AS locked_until,
               extract(epoch FROM run_at)::float8 AS run_at, last_error, payload
        FROM webhook_worker.jobs ORDER BY id""")
    chaos.stuck = psql_json(chaos.url, """
        SELECT id, kind, attempt, locked_by FROM webhook_worker.jobs
        WHERE state = 'running' AND locked_until < now() - interval '2 seconds'""")
    drain.stop_replicas(chaos)
    chaos.receiver_connections = chaos.receiver.connections
    return analyse(chaos)


def cleanup(chaos):
    chaos.stop_inserting.set()
    if chaos.sampler is not None:
        chaos.sampler.stop.set()
    for replica in chaos.replicas:
        if replica.alive():
            end_process(replica.process, signal.SIGKILL)
    if chaos.receiver is not None:
        try:
            chaos.receiver.close()
        except Exception:
            pass
    server_log = os.path.join(chaos.pg_dir, "server.log")
    if os.path.exists(server_log):
        try:
            shutil.copyfile(server_log, os.path.join(chaos.logdir, "postgresql.log"))
        except OSError:
            pass
    try:
        PgBouncer.close_all(keep_logs_in=chaos.logdir)
    except Exception as error:
        log(f"cleanup of PgBouncer failed: {error}")
    try:
        if chaos.own_cluster:
            run_script("pg", "destroy", chaos.pg_dir)
        elif chaos.server_url:
            run_script("pg", "start", chaos.pg_dir)
            drop_database(chaos.server_url, CHAOS_DB, force=True)
    except Exception as error:
        log(f"cleanup of the cluster failed: {error}")


def main():
    setup_process()
    chaos = Chaos()
    status = 1
    try:
        status = run(chaos)
    except RunError as error:
        print(f"\nCHAOS FAIL: the run could not complete: {error}", file=sys.stderr, flush=True)
        print(f"worker logs kept in {chaos.logdir}", file=sys.stderr, flush=True)
        status = 1
    except KeyboardInterrupt:
        print("\nscripts/chaos: interrupted", file=sys.stderr, flush=True)
        status = 130
    finally:
        cleanup(chaos)
    if status == 0 and not chaos.keep_logs:
        shutil.rmtree(chaos.logdir, ignore_errors=True)
    elif status == 0:
        print(f"worker logs kept in {chaos.logdir}", flush=True)
    sys.exit(status)
