"""The run's figures: counts, duplicates and their causes, latencies, circuits, what the
operator did, memory, and what the replicas' and PostgreSQL's logs say."""

import collections
import datetime
import os

from ...core import percentile
from ...processes import log_lines
from ..logs import is_error_line, parse_log_line
from ..settings import ENDPOINT_CONCURRENCY, stamp
from . import adaptive


def run_figures(an):
    """Counts, duplicates and their causes, latencies."""
    c = an.c
    events = an.events
    event_jobs = an.event_jobs

    # Figures.
    statuses = collections.Counter(d["status"] for d in an.deliveries.values())
    latencies = []
    for d in an.deliveries.values():
        if c.client_behaviour.get(d["oauth_client_id"]) != "healthy":
            continue
        event = event_jobs.get(d["source_job_id"])
        accepted = [r["t"] for r in an.receipts.get(d["delivery_id"], []) if r["status"] == 200]
        if event and accepted:
            latencies.append(min(accepted) - event["created"])
    lost = collections.Counter(a["kind"] for a in an.all_attempts if a["outcome"] == "lost")
    released = collections.Counter(a["kind"] for a in an.all_attempts if a["outcome"] == "released")
    fig = an.figures
    fig["events inserted"] = len(events)
    fig["events fanned out / dead-lettered"] = f"{an.handled_events} / {an.dead_events}"
    fig["deliveries"] = len(an.deliveries)
    fig["delivered / failed / cancelled / pending"] = (
        f"{statuses['delivered']} / {statuses['failed']} / {statuses['cancelled']} / {statuses['pending']}")
    by_behaviour = collections.defaultdict(collections.Counter)
    for d in an.deliveries.values():
        by_behaviour[c.client_behaviour.get(d["oauth_client_id"])][d["status"]] += 1
    fig["by endpoint (delivered/failed[/cancelled])"] = ", ".join(
        f"{b} {v['delivered']}/{v['failed']}" + (f"/{v['cancelled']}" if v["cancelled"] else "")
        for b, v in sorted(by_behaviour.items(), key=lambda x: str(x[0])))
    truncated = sum(1 for r in an.all_receipts if r["status"] == "truncated")
    fig["HTTP requests received"] = (f"{len(an.all_receipts)} on {c.receiver_connections} connections"
                                     + (f" ({truncated} cut off mid-body)" if truncated else ""))
    fig["delivery attempts recorded"] = sum(len(v) for v in an.delivery_attempts.values())
    fig["kill -9"] = len(c.kills)
    fig["graceful stops (SIGTERM)"] = (f"{len(c.graceful)} (exit in "
                                       + ", ".join(f"{g['seconds']}s" for g in c.graceful if g["seconds"] is not None)
                                       + ")") if c.graceful else 0
    fig["backend terminations"] = (f"{len(c.terminations)} ({sum(t['backends'] for t in c.terminations)} backends)")
    fig["PostgreSQL restarts (and stops)"] = (f"{len(c.pg_restarts)} ("
                                              + ", ".join(f"{p['kind']} {p['t1'] - p['t0']:.1f}s"
                                                          for p in c.pg_restarts) + ")")
    fig["replica generations started"] = len(c.generations)
    if c.start_refusals:
        fig["starts refused during the restart"] = len(c.start_refusals)
    fig["insert retries (outage)"] = f"{c.insert_failures} ({c.insert_outage:.1f}s)"
    fig["lost attempts"] = f"{sum(lost.values())} ({', '.join(f'{k} {v}' for k, v in sorted(lost.items())) or '-'})"
    fig["released attempts"] = (f"{sum(released.values())} "
                                f"({', '.join(f'{k} {v}' for k, v in sorted(released.items())) or '-'})")
    fig["duplicates (explained / unexplained)"] = (
        f"{an.duplicates} ({an.duplicates - an.unexplained_duplicates} / {an.unexplained_duplicates})")
    fig["  explained by"] = ", ".join(f"{k} {v}" for k, v in sorted(an.causes.items())) or "-"
    fig["deliveries answered 2xx more than once"] = an.accepted_twice
    fig["timeout races (answered 200, recorded timeout)"] = an.timeout_races
    fig["timed-out requests that arrived late / never"] = f"{an.late_arrivals} / {an.never_arrived}"
    if latencies:
        fig["healthy insert->delivery p50 / p99 / max"] = (
            f"{percentile(latencies, 50):.3f}s / {percentile(latencies, 99):.3f}s / {max(latencies):.3f}s "
            f"(every event, the lock phase's included)")
    # During the run: the inserter's events (after the lock phase), while the hanging endpoint
    # held its share of the replicas' slots and the other misbehaving endpoints theirs.
    run_latencies = []
    for d in an.deliveries.values():
        event = event_jobs.get(d["source_job_id"])
        if c.client_behaviour.get(d["oauth_client_id"]) != "healthy" or not event or event["seq"] <= c.seq_base:
            continue
        accepted = [r["t"] for r in an.receipts.get(d["delivery_id"], []) if r["status"] == 200]
        if accepted:
            run_latencies.append(min(accepted) - event["created"])
    an.run_latencies = run_latencies
    if run_latencies:
        fig["healthy insert->delivery during the run p50 / p99 / max"] = (
            f"{percentile(run_latencies, 50):.3f}s / {percentile(run_latencies, 99):.3f}s / "
            f"{max(run_latencies):.3f}s ({len(run_latencies)} deliveries) | hanging endpoint in flight: peak "
            f"{an.hang_db_peak} running, {an.hang_receiver_peak} open at the receiver "
            f"(limit {ENDPOINT_CONCURRENCY})")


def circuit_figures(an):
    """Every endpoint's circuit, what the operator did at the end, the sampler, the drain, memory."""
    c = an.c
    fig = an.figures
    circuits = []
    for key, row in sorted(an.endpoint_rows.items()):
        opened = c.sampler.opened.get(key, 0) if c.sampler else 0
        circuits.append(f"{c.client_behaviour.get(key.split(':', 1)[1], key)} {row['state']} "
                        f"(opened {opened}x seen, {row['trips']} trips now, {row['recoveries']} recoveries, "
                        f"{row['failures']} failures)")
    fig["endpoint circuits (webhook_worker.endpoints)"] = "; ".join(circuits) or "none"
    op = c.operator
    if op:
        held = ", ".join(f"{c.client_behaviour.get(k, k)} {v['n']} (attempts spent {v['min_attempt']}-"
                         f"{v['max_attempt']})" for k, v in sorted(op["held"].items()))
        fig["held by open circuits at the end"] = held or "none"
        fig["operator at the end"] = (
            (f"cancelled {op['cancelled']['cancelled']} hanging deliveries ({op['cancelled']['jobs_removed']} "
             f"jobs removed, webhook.deliver paused {op['paused_seconds']:.1f}s)" if op["cancelled"] else
             "nothing to cancel") + (f"; disabled {op['disabled']}" if op["disabled"] else ""))
    if c.sampler:
        fig["in-flight sampler"] = (f"{c.sampler.samples} samples, longest gap {c.sampler.longest_gap:.2f}s "
                                    f"({c.sampler.failures} failed queries: PostgreSQL restarts)")
    degrade = adaptive.figure(an)
    if degrade:
        fig["degrading endpoint's adaptive limit"] = degrade
    fig["drain after faults stopped"] = f"{c.drain_seconds:.1f}s" if c.drain_seconds is not None else "timed out"
    if c.peak_rss:
        top = max(c.peak_rss.items(), key=lambda kv: kv[1])
        fig["peak RSS (VmHWM) of replicas"] = f"{top[1] / 1024:.1f} MiB ({top[0]})"


def log_figures(an):
    """What the attempts, the dead letters and the replicas' and PostgreSQL's logs say."""
    c = an.c
    fig = an.figures
    db_failures = collections.Counter(a["kind"] for a in an.all_attempts
                                      if a["outcome"] == "failed" and "PQError" in (a["error"] or ""))
    fig["attempts failed on the worker's own database error"] = (
        f"{sum(db_failures.values())} ({', '.join(f'{k} {v}' for k, v in sorted(db_failures.items())) or '-'})")
    dead_on_db = collections.Counter()
    for dl in an.dead_rows:
        if "PQError" in (dl["last_error"] or ""):
            d = an.deliveries.get((dl["payload"] or {}).get("delivery_id"))
            dead_on_db[c.client_behaviour.get(d["oauth_client_id"]) if d else dl["kind"]] += 1
    if dead_on_db:
        fig["  of which ended in a dead letter"] = (
            f"{sum(dead_on_db.values())} ({', '.join(f'{k} {v}' for k, v in sorted(dead_on_db.items()))})")
    errors, foreign = {}, 0
    for g in c.generations:
        lines = log_lines(g["log"])
        foreign += sum(1 for l in lines if parse_log_line(l) is None)
        bad = [l for l in lines if is_error_line(l)]
        if bad:
            errors[g["worker_id"]] = bad
    an.error_logs = errors
    fig["error-level log lines"] = sum(len(v) for v in errors.values())
    fig["non-JSON log lines (libpq notices)"] = foreign
    unexplained_lost = [a for a in an.all_attempts if a["outcome"] == "lost" and an.fault_cause(a, None) is None]
    if unexplained_lost:
        fig["lost attempts with no fault nearby"] = len(unexplained_lost)
        for a in unexplained_lost[:5]:
            an.notes.append("\n".join(
                [f"lost with no kill, stop or database fault nearby: job {a['job_id']} ({a['kind']}) "
                 f"attempt {a['attempt']} by {a['worker_id']} {stamp(a['started'])} -> {stamp(a['finished'])}"]
                + an.replica_warnings(a["worker_id"], a["started"] - 1, a["finished"] + 1)))
    deadlocks = []
    server_log = os.path.join(c.logdir, "postgresql.log")
    pg_lines = log_lines(os.path.join(c.pg_dir, "server.log")) or log_lines(server_log)
    for i, line in enumerate(pg_lines):
        if "deadlock detected" in line:
            try:  # only this run's (a CHAOS_PG_DIR cluster's log holds earlier ones too)
                when = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").replace(
                    tzinfo=datetime.UTC).timestamp()
            except ValueError:
                when = None
            if when is None or when >= c.started_at:
                deadlocks.append(pg_lines[i:i + 16])
    fig["deadlocks in the PostgreSQL log"] = len(deadlocks)
    victims = collections.Counter()
    warned, really_lost = 0, 0
    lost_by = {(a["job_id"], a["worker_id"]) for a in an.all_attempts if a["outcome"] == "lost"}
    for g in c.generations:
        for _, message, entry in an.replica_log(g["worker_id"]):
            error = str(entry.get("error") or "")
            if "40P01" in error:
                statement = error.split(" [40P01]")[0].rsplit(" ", 1)[-1]
                victims[statement] += 1
            if message.startswith("leases lost for jobs still running here"):
                for text in str(entry.get("job.ids") or "").strip("[]").split(","):
                    if text.strip().isdigit():
                        warned += 1
                        really_lost += (int(text), g["worker_id"]) in lost_by
    if victims:
        fig["  deadlock victims (replica logs)"] = ", ".join(f"{k} {v}" for k, v in sorted(victims.items()))
    fig["'leases lost ... still running here' warnings"] = (
        f"{warned} job(s), of which {really_lost} had a lost attempt by that replica")
    if deadlocks:
        an.notes.append("first deadlock in the PostgreSQL log:\n" + "\n".join("    " + l[:400] for l in deadlocks[0]))


def figures(an):
    """The run's figures, in the order the report prints them (an.figures)."""
    run_figures(an)
    circuit_figures(an)
    log_figures(an)
