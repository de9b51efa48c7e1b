"""The checks of the phases with checks of their own: the table lock, SIGTERM while PostgreSQL
is down, and the connect window."""

import collections
import os

from ...processes import log_lines
from ..logs import CRASH_REPORT_MARKERS, one_line, parse_log_line
from ..settings import (
    GRACEFUL_EXIT_LIMIT,
    HELD_ENDPOINTS,
    LEASE,
    LOCK_LEASES,
    LOCK_SETTLE_TIMEOUT,
    MAX_ATTEMPTS,
    PG_DOWN_EXIT_LIMIT,
    stamp,
)


def check_table_lock(an):
    """Fault 1: once the lock went, every event of the phase fanned out to exactly its
    recipients, each delivery reached its recipient and ended (healthy ones delivered), none
    was sent twice, and no attempt of the phase's jobs was lost."""
    phase = an.c.lock_phase
    if phase is None or phase["held"] is None:
        an.check("lock held over 3 leases: the phase did not run", ["the lock phase did not run"])
        return
    held = phase["held"]
    events = list(phase["jobs"])
    general, fanout, ends, dups, losses = [], [], [], [], []
    if held < LOCK_LEASES * LEASE:
        general.append(f"the lock was held {held:.2f}s, less than {LOCK_LEASES} leases ({LOCK_LEASES * LEASE:.0f}s)")
    if phase["settled"] is None:
        general.append(f"the phase's jobs had not finished {LOCK_SETTLE_TIMEOUT:.0f}s after the lock went "
                       f"(the random faults then began)")
    by_source = collections.defaultdict(list)
    for d in an.deliveries.values():
        if d["source_job_id"] in phase["jobs"]:
            by_source[d["source_job_id"]].append(d)
    deliveries = [d for job_id in events for d in by_source.get(job_id, [])]
    for job_id in events:
        got = sorted(d["oauth_client_id"] for d in by_source.get(job_id, []))
        want = sorted(an.expected.get(job_id, set()))
        if got != want:
            dead = an.dead.get(job_id)
            why = f" (dead letter: {dead[0]['reason']}: {one_line(dead[0]['last_error'])})" if dead else ""
            attempts = "; ".join(f"#{a['attempt']} {a['outcome']} by {a['worker_id']} {stamp(a['started'])}"
                                 f"->{stamp(a['finished'])}" for a in an.attempts.get(job_id, []))
            fanout.append(f"event job {job_id}: deliveries to {got}, expected {want}{why}; attempts: {attempts}")
    # The deliveries of the endpoints that never succeed outlive the phase, held by their open
    # circuits (the phase settles without them): what happens to them once the random faults
    # began is judged by the run's own checks, so only their attempts before that count here.
    lingering = {an.c.client_of[b] for b in HELD_ENDPOINTS}
    settled_at = phase.get("settled_at") or float("inf")
    for d in deliveries:
        behaviour = an.c.client_behaviour.get(d["oauth_client_id"])
        if d["status"] == "pending":
            ends.append("still pending\n" + an.describe_delivery(d["delivery_id"]))
        elif behaviour == "healthy" and d["status"] != "delivered":
            ends.append(f"healthy endpoint: {d['status']}\n" + an.describe_delivery(d["delivery_id"]))
        elif not an.receipts.get(d["delivery_id"]) and not (
                d["oauth_client_id"] in lingering and d["status"] in ("failed", "cancelled")
                and an.counted_attempts(d) < MAX_ATTEMPTS):
            ends.append(f"{d['status']}, but never reached its recipient\n" + an.describe_delivery(d["delivery_id"]))
    duplicates = 0
    for d in deliveries:
        resent = an.resent.get(d["delivery_id"], 0)
        if d["oauth_client_id"] in lingering:
            resent = sum(1 for t in an.resent_at.get(d["delivery_id"], []) if t < settled_at)
        if resent:
            duplicates += resent
            dups.append(f"sent again {resent} time(s)\n" + an.describe_delivery(d["delivery_id"]))
    jobs = set(events) | {j for d in deliveries for j in an.deliver_job.get(d["delivery_id"], [])}
    lingering_jobs = {j for d in deliveries if d["oauth_client_id"] in lingering
                      for j in an.deliver_job.get(d["delivery_id"], [])}
    lost = [a for j in sorted(jobs) for a in an.attempts.get(j, []) if a["outcome"] == "lost"
            and (j not in lingering_jobs or a["started"] < settled_at)]
    for a in lost:
        losses.append("\n".join(
            [f"lost: job {a['job_id']} ({a['kind']}) attempt #{a['attempt']} by {a['worker_id']} "
             f"{stamp(a['started'])} -> {stamp(a['finished'])}"]
            + an.replica_warnings(a["worker_id"], a["started"] - 1, a["finished"] + 1)))
    statuses = collections.Counter(d["status"] for d in deliveries)
    failed = len(deliveries) - statuses["delivered"]
    name = (f"lock held {held:.1f}s over {int(held / LEASE + 0.001)} leases: {len(events)} events, "
            f"{statuses['delivered']} deliveries delivered"
            + (f" (+{failed} failed or pending at misbehaving endpoints)" if failed else "")
            + f", {duplicates} duplicates, {len(lost)} lost")
    an.check(name, general + interleave(fanout, ends, dups, losses))


def interleave(*groups):
    """Problems of several kinds, alternating, so the first few examples show each kind."""
    out = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


def check_sigterm_pg_down(an):
    """Fault 2: the replica given SIGTERM while PostgreSQL was down exited 0 within
    PG_DOWN_EXIT_LIMIT."""
    phase = an.c.pg_down_stop
    if phase is None:
        an.check("SIGTERM while PostgreSQL was down: the phase did not run", ["the phase did not run"])
        return
    worker = phase["worker_id"]
    tail = " | ".join(log_lines(os.path.join(an.c.logdir, f"{worker}.log"))[-5:])[-800:]
    problems = []
    if phase["status"] is not None:
        name = (f"SIGTERM while PostgreSQL was down: {worker} exited {phase['status']} after "
                f"{phase['seconds']:.2f}s (limit {PG_DOWN_EXIT_LIMIT:.1f}s)")
        if phase["status"] != 0:
            problems.append(f"{worker} exited {phase['status']} after SIGTERM while PostgreSQL was down; "
                            f"log tail: {tail}")
    else:
        later = ("killed, still running " f"{GRACEFUL_EXIT_LIMIT:.0f}s after SIGTERM" if phase["late_status"] == "hung"
                 else f"exited {phase['late_status']} {phase['late_seconds']:.2f}s after SIGTERM, "
                      f"once PostgreSQL was back")
        name = (f"SIGTERM while PostgreSQL was down: {worker} still running after {PG_DOWN_EXIT_LIMIT:.1f}s "
                f"(limit {PG_DOWN_EXIT_LIMIT:.1f}s); {later}")
        problems.append(f"{worker} did not exit within {PG_DOWN_EXIT_LIMIT:.1f}s of SIGTERM while PostgreSQL "
                        f"was down ({phase['pg_down']:.1f}s); then {later}; log tail: {tail}")
    an.check(name, problems)


def check_connect_window(an):
    """Fault 3: no replica that lived through the window crashed: none exited on its own or
    by a signal, then or later (a crashing Swift process writes its backtrace first, which
    can take many seconds), and none wrote a crash report; and the window did terminate
    some freshly opened backends."""
    phase = an.c.connect_window
    if phase is None or phase["t1"] is None:
        an.check("pg_terminate_backend right after connect: the phase did not run", ["the phase did not run"])
        return
    window = set(phase["running"]) | {g["worker_id"] for g in an.c.generations
                                      if phase["t0"] <= g["started"] <= phase["watched_until"]}
    exits = {x["worker_id"]: x for x in an.c.unexpected_exits if x["worker_id"] in window}
    reports = {}
    for worker in sorted(window):
        lines = log_lines(os.path.join(an.c.logdir, f"{worker}.log"))
        crash = [l for l in lines if parse_log_line(l) is None and any(m in l for m in CRASH_REPORT_MARKERS)]
        if crash:
            first = next((l for l in crash if "Program crashed" in l), crash[0])
            thread = next((i for i, l in enumerate(lines) if l.startswith("Thread ") and l.endswith(" crashed:")),
                          lines.index(first))
            where = next((l.strip() for l in lines[thread:]
                          if " in webhook-worker at /" in l and "/Sources/" in l and "/checkouts/" not in l), "")
            reports[worker] = one_line(first, 200) + (f"; first own frame: {one_line(where, 300)}" if where else "")
    problems = []
    for worker in sorted(set(exits) | set(reports)):
        x = exits.get(worker)
        if x is None:
            how = "wrote a crash report"
        elif isinstance(x["status"], int) and x["status"] < 0:
            how = f"killed by signal {-x['status']} at {stamp(x['t'])}"
        else:
            how = f"exited with status {x['status']} at {stamp(x['t'])}"
        problems.append(f"{worker} {how} (window {stamp(phase['t0'])} -> {stamp(phase['t1'])}): "
                        + (reports.get(worker) or "log tail: " + " | ".join(
                            log_lines(os.path.join(an.c.logdir, f"{worker}.log"))[-5:])[-600:]))
    if phase["fresh"] == 0:
        problems.append(f"no freshly opened backend was terminated in {phase['queries']} queries: "
                        f"the window tested nothing")
    crashes = len(set(exits) | set(reports))
    name = (f"pg_terminate_backend right after connect for {phase['t1'] - phase['t0']:.1f}s: "
            f"{phase['initial'] + phase['fresh']} backends terminated ({phase['initial']} at the start, "
            f"{phase['fresh']} fresh), {crashes} crashes")
    an.check(name, problems)
