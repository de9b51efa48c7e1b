"""The table of figures and targets, and the results file."""

import datetime
import json
import os

from ..core import ROOT
from .settings import ISOLATION_LIMIT
from .targets import targets as compute_targets


def table_rows(res, jobs):
    """The table's rows (phase, metric, value, target, verdict) from the results, their targets
    included (res["targets"]); `jobs` is BENCH_JOBS."""
    targets = res["targets"]
    pg = res["environment"]["postgresql"]
    rows = [("PostgreSQL", "fsync / synchronous_commit", f"{pg['fsync']} / {pg['synchronous_commit']}", None)]

    def fmt(value, unit=""):
        if value is None:
            return "-"
        if isinstance(value, float):
            value = f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
        elif isinstance(value, int):
            value = f"{value:,}"
        return f"{value}{unit}"

    def add(phase, metric, value, target=None):
        rows.append((phase, metric, value if isinstance(value, str) else fmt(value), target))

    def failed(key, phase):
        if key in res and "error" in res[key]:
            add(phase, "", "FAILED")
        return key in res and "error" not in res[key]

    def cpu(phase, result, names=("worker", "postgresql", "nginx")):
        shares = result.get("cpu", {})
        shown = [n for n in names if n in shares]
        add(phase, "CPU, % of one core: " + " / ".join(shown),
            " / ".join(fmt(shares[n]["percent_of_one_core"]) for n in shown))

    def db_time(phase, result, unit, target=None):
        profile = result.get("database_time", {})
        add(phase, f"  database time per {unit} (ms, pg_stat_statements)",
            fmt(profile.get(f"ms_per_{unit}")) if "error" not in profile else "unavailable", target)

    for key, label in (("burn_down_1_worker", "1 worker"), ("burn_down_2_workers", "2 workers")):
        if failed(key, "queue burn-down"):
            b = res[key]
            add("queue burn-down", f"{label}: jobs/s ({b['jobs_succeeded']:,} no-op jobs)", b["jobs_per_second"],
                "noop_drain" if b["workers"] == 1 else None)
            add("queue burn-down", f"{label}: slowest tenth / overall", b["slowest_tenth_over_overall"])
            db_time("queue burn-down", b, "job")
            add("queue burn-down", f"{label}: peak RSS per worker (MiB)",
                " / ".join(fmt(v) for v in b["peak_rss_mib"] or []))
    if "burn_down_ratio_2_over_1" in res:
        add("queue burn-down", "ratio 2 workers / 1 worker", res["burn_down_ratio_2_over_1"])
    if failed("pickup_latency", "pick-up latency"):
        p = res["pickup_latency"]
        add("pick-up latency", f"insert -> claim p50 (ms; {p['measured']} jobs {p['gap_ms']} ms apart, idle worker)",
            p["pickup_ms"]["p50"])
        add("pick-up latency", "insert -> claim p99 (ms)", p["pickup_ms"]["p99"], "pickup_p99_idle")
        add("pick-up latency", "insert -> claim max (ms)", p["pickup_ms"]["max"])
        add("pick-up latency", "peak RSS (MiB)", p["peak_rss_mib"])
    for key in ("delivery", "delivery_2_clients"):
        if failed(key, "delivery"):
            d = res[key]
            main = key == "delivery"
            add("delivery", f"deliveries/s ({d['events']:,} events x {d['clients']} clients, 1 worker, nginx)",
                d["deliveries_per_second"], "deliveries_per_second" if main else "two_endpoints")
            runs(add, "delivery", d)
            add("delivery", "  receiver (nginx) CPU, % of one core", d["receiver_cpu_percent_of_one_core"])
            db_time("delivery", d, "delivery", "db_ms_per_delivery" if main else None)
            if main:
                cpu("delivery", d)
                per = d.get("cpu_per_delivery")
                if per:
                    add("delivery", "CPU per delivery (µs): " + " / ".join(per["us"]),
                        " / ".join(f"{us:,}" for us in per["us"].values()))
                    add("delivery", f"  most deliveries/s {res['environment'].get('cpus', '?')} cores give at "
                        "that cost", per["ceiling_per_second"])
                add("delivery", "insert -> receipt p50 / p99 (ms; whole burst queued at once)",
                    f"{fmt(d['insert_to_receipt_ms']['p50'])} / {fmt(d['insert_to_receipt_ms']['p99'])}")
            add("delivery", "delivered / expected",
                f"{d['deliveries_by_status'].get('delivered', 0):,} / {d['deliveries_expected']:,}")
            if main:
                add("delivery", "HTTP requests / TCP connections at nginx",
                    f"{d['receiver_requests']:,} / {d['receiver_tcp_connections']:,}")
                add("delivery", "peak RSS (MiB)", d["peak_rss_mib"], "delivery_peak_rss")
    if failed("pgbouncer", "pgbouncer"):
        pgb, phase = res["pgbouncer"], "pgbouncer"

        def beside(figure):
            f = pgb[figure]
            return f"{fmt(f['pgbouncer'])} ({fmt(f['direct'])} direct, x{fmt(f['ratio'])})"

        for key in ("pgbouncer_burn_down_1_worker", "pgbouncer_delivery"):
            failed(key, phase)
        if "error" not in res.get("pgbouncer_burn_down_1_worker", {"error": ""}):
            add(phase, f"no-op drain, 1 worker via PgBouncer: jobs/s ({jobs:,} jobs)", beside("jobs_per_second"))
            add(phase, "  database time per job (ms, pg_stat_statements)", beside("db_ms_per_job"))
        if "error" not in res.get("pgbouncer_delivery", {"error": ""}):
            d = res["pgbouncer_delivery"]
            add(phase, f"deliveries/s via PgBouncer ({d['events']:,} events x {d['clients']} clients, 1 worker)",
                beside("deliveries_per_second"))
            add(phase, "  database time per delivery (ms, pg_stat_statements)", beside("db_ms_per_delivery"))
            cpu(phase, d, ("worker", "postgresql", "nginx", "pgbouncer"))
            add(phase, "delivered / expected",
                f"{d['deliveries_by_status'].get('delivered', 0):,} / {d['deliveries_expected']:,}")
    if failed("latency_under_load", "latency under load"):
        u, phase = res["latency_under_load"], "latency under load"
        add(phase, f"insert -> claim p50 (ms; {u['measured']} no-op jobs {u['probe_gap_ms']} ms apart, "
            f"{u['deliveries_per_second_offered']:,} deliveries/s offered)", u["pickup_ms"]["p50"])
        add(phase, "insert -> claim p99 (ms)", u["pickup_ms"]["p99"], "pickup_p99_under_load")
        add(phase, "insert -> claim max (ms)", u["pickup_ms"]["max"])
        add(phase, "deliveries/s achieved in the window", u["deliveries_per_second_achieved"])
        queued = sum(n for kind, n in u["queued_at_window_end"].items() if kind != "noop")
        add(phase, "jobs queued at the window's end (kept up?)", f"{queued:,} ({'yes' if u['kept_up'] else 'NO'})")
        cpu(phase, u)
        add(phase, "peak RSS (MiB)", u["peak_rss_mib"])
    if failed("isolation", "isolation"):
        iso = res["isolation"]
        lat, peak, circuit = iso["healthy_insert_to_post_ms"], iso["hanging_in_flight_peak"], iso["hanging_circuit"]
        add("isolation", f"healthy insert -> POST p50 (ms; {iso['healthy_events']} events {iso['gap_ms']} ms apart)",
            lat["p50"], "isolation_p50")
        add("isolation", "healthy insert -> POST max (ms)", lat["max"], "isolation_max")
        add("isolation", "hanging endpoint in flight, peak (receiver / database)",
            f"{peak['receiver']} / {peak['database_sampled']}", "isolation_in_flight")
        add("isolation", f"hanging endpoint requests ({iso['hanging_backlog']} queued, {iso['request_timeout']} "
            "timeout; circuit " + (f"{circuit['state']} after {iso['hanging_circuit_open_after_s']} s)"
                                   if circuit and iso["hanging_circuit_open_after_s"] is not None else "never open)"),
            iso["hanging_requests"])
        add("isolation", "peak RSS (MiB)", iso["peak_rss_mib"])
    endpoint_rows(res, add, failed)
    if failed("backlog", "backlog"):
        b = res["backlog"]
        add("backlog", f"no-op drain, 1 worker: jobs/s ({b['jobs_succeeded']:,} jobs inserted at once)",
            b["jobs_per_second"])
        add("backlog", "  over the 1-worker burn-down's rate", b.get("over_burn_down_1_worker"), "backlog_rate")
        add("backlog", "  per tenth, slowest / fastest (jobs/s)",
            f"{fmt(min(t for t in b['tenths_jobs_per_second'] if t))} / "
            f"{fmt(max(t for t in b['tenths_jobs_per_second'] if t))}" if any(b["tenths_jobs_per_second"]) else "-")
        add("backlog", "  slowest tenth / overall", b["slowest_tenth_over_overall"], "backlog_steady")
        db_time("backlog", b, "job")
        add("backlog", "peak RSS (MiB)", b["peak_rss_mib"][0] if b["peak_rss_mib"] else None)
    if failed("history", "history"):
        h, phase = res["history"], "history"
        for how, key in (("DELETE", "delete"), ("partition drop", "drop")):
            f = h[key]
            add(phase, f"remove a day ({h['attempt_rows_per_day']:,} attempts) by {how}: seconds", f["seconds"],
                "history_drop_seconds" if key == "drop" else None)
            add(phase, f"  WAL written (MiB) / disk returned (MiB of {fmt(f['mib_before'])})",
                f"{fmt(f['wal_mib'])} / {fmt(f['mib_returned'])}")
        add(phase, "  drop's WAL, % of DELETE's", h["drop_wal_percent_of_delete"], "history_drop_wal")
        s = h["search"]
        add(phase, f"search by client, 30 days ({s['deliveries']:,} deliveries): p50 (ms, in the server)",
            s["p50_ms"])
        add(phase, "  p95 (ms)", s["p95_ms"], "history_search_p95")
    if failed("history_load", "history load"):
        h, phase = res["history_load"], "history load"
        rate, db = h["deliveries_per_second"], h["db_ms_per_delivery"]
        add(phase, f"deliveries/s with {h['history_rows']:,} rows of history ({fmt(h['history_mib'])} MiB, "
            f"{h['partitions']} partitions)", rate["with_history"])
        add(phase, "  the same with none (delivery phase)", rate["empty"])
        add(phase, "  ratio", rate["ratio"], "history_load_rate")
        add(phase, "  database time per delivery (ms): with history / none",
            f"{fmt(db['with_history'])} / {fmt(db['empty'])}")
    if failed("pgbench", "pgbench"):
        for c in (1, 8):
            p = res["pgbench"][f"clients_{c}"]
            add("pgbench", f"one-row UPDATE, {c} client{'s' if c > 1 else ''}: tps", p["tps"])
    return [(a, b, c, targets[t]["target"] if t else "", targets[t]["verdict"] if t else "") for a, b, c, t in rows]


def runs(add, phase, result):
    """With BENCH_REPEAT > 1, each run's rate under the median's (whose figures the phase shows)."""
    if len(result.get("runs") or []) > 1:
        add(phase, f"  each of {len(result['runs'])} runs, in order (the median's figures shown)",
            " / ".join("-" if rate is None else f"{rate:,.1f}" for rate in result["runs"]))


def endpoint_rows(res, add, failed):
    """The per-endpoint phases' rows."""
    if failed("one_endpoint", "one endpoint"):
        d = res["one_endpoint"]
        add("one endpoint", f"deliveries/s ({d['events']:,} events, 1 worker, nginx)", d["deliveries_per_second"],
            "one_endpoint")
        runs(add, "one endpoint", d)
        add("one endpoint", "  database time per delivery (ms, pg_stat_statements)",
            d.get("database_time", {}).get("ms_per_delivery"))
        add("one endpoint", "delivered / expected",
            f"{d['deliveries_by_status'].get('delivered', 0):,} / {d['deliveries_expected']:,}")
    if failed("slow_endpoint", "slow endpoint"):
        s = res["slow_endpoint"]
        add("slow endpoint", f"deliveries/s (answers in {s['delay_ms']} ms; from {s['window_s'][0]} s to "
            f"{s['window_s'][1]} s)", s["deliveries_per_second"], "slow_endpoint")
        add("slow endpoint", "requests in flight at the endpoint, peak", s["in_flight_peak"],
            "slow_endpoint_in_flight")
        add("slow endpoint", "the endpoint's limit in the database, peak",
            s["limit_peak"] if s["limit_peak"] is not None else "(none kept)")
    if failed("fairness", "fairness"):
        f = res["fairness"]
        lat = f["new_insert_to_receipt_ms"]
        add("fairness", f"new endpoint insert -> receipt p50 (ms; {f['busy_queued']:,} queued for another)",
            lat["p50"], "fairness_p50")
        add("fairness", "new endpoint insert -> receipt max (ms)", lat["max"])
    if failed("retry_after", "retry-after"):
        a = res["retry_after"]
        add("retry-after", f"requests sent inside the 429's Retry-After ({a['retry_after_s']} s; {a['events']} "
            "queued), after an answer could have come back", a.get("requests_sent_inside_window"),
            "retry_after_inside")
        add("retry-after", f"  requests arriving inside it, the first {ISOLATION_LIMIT} (sent at once) included",
            a["requests_inside_window"])
        add("retry-after", "the throttled delivery retried after (s)", a["throttled_retried_after_s"])


def report(bench):
    """Prints the table and the notes under it, and writes the results to .bench/."""
    res = bench.results
    res["targets"] = compute_targets(res)
    table = table_rows(res, bench.jobs)
    header = ("phase", "metric", "value", "target", "")
    widths = [max(len(row[i]) for row in table + [header]) for i in range(5)]

    def line(cells):
        a, b, c, t, v = cells
        return (f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {t:<{widths[3]}}  {v}").rstrip()

    print()
    print(line(header))
    print("-" * (sum(widths) + 8))
    for cells in table:
        print(line(cells))
    print()
    print("Pick-up latency is measured to job_attempts.started_at, the claim, just before the handler starts.")
    print("Targets are issue 11's; issue 22's for the per-endpoint phases, issue 23's for history's; a missed "
          "one is reported, not counted as a problem (isolation's are).")
    if bench.statements_error:
        print(f"pg_stat_statements unavailable: {bench.statements_error}")
    if bench.problems:
        print("Problems:")
        for problem in bench.problems:
            print(f"  - {problem}")
    os.makedirs(os.path.join(ROOT, ".bench"), exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(ROOT, ".bench", f"results-{stamp}.json")
    with open(path, "w") as f:
        json.dump(bench.results, f, indent=2, sort_keys=False)
        f.write("\n")
    print(f"results written to {os.path.relpath(path, ROOT)}")
