"""The bench's computations of figures from what it measured."""


from ..core import percentile
from .settings import PLURAL, STATEMENTS_TOP


def r(value, digits=1):
    return None if value is None else round(value, digits)



def median_run(runs, rate_key="deliveries_per_second"):
    """The run with the median `rate_key` (the lower of the two middle ones for an even count),
    with every run's rate in `runs`, in the order they ran, when there was more than one. A run
    without the rate (a failed one) ranks lowest."""
    if not runs:
        return None
    ranked = sorted(runs, key=lambda run: run.get(rate_key) or 0)
    median = ranked[(len(ranked) - 1) // 2]
    if len(runs) == 1:
        return median
    return {**median, "runs": [run.get(rate_key) for run in runs]}


def distribution(values, digits=1):
    return {"p50": r(percentile(values, 50), digits), "p99": r(percentile(values, 99), digits),
            "max": r(max(values) if values else None, digits),
            "mean": r(sum(values) / len(values) if values else None, digits)}


def tenth_rates(first, tenths):
    """Steadiness: the attempts in order of finished_at, in ten equal parts ((count, the part's
    last finished_at) each); each part's rate (jobs/s) over the time since the previous part's
    last job (the first's since `first`, the first start). None for a part of no time."""
    rates, previous = [], first
    for n, end in tenths:
        rates.append(round(n / (end - previous), 1) if end > previous else None)
        previous = end
    return rates


def slowest_over_overall(tenths, rate):
    """The slowest tenth's rate over the overall rate (None when either is unknown)."""
    slowest = min((t for t in tenths if t is not None), default=None)
    return round(slowest / rate, 2) if slowest and rate else None


def cpu_per_delivery(cpu, delivered, cpus):
    """Each measured process's CPU time per delivery (µs), from a phase's CPU seconds, and the
    deliveries a second that `cpus` cores could give at that cost with every core busy and nothing
    else running: the ceiling a measured rate sits under on this machine. None without either."""
    if not delivered:
        return None
    per = {name: round(share["cpu_seconds"] * 1e6 / delivered)
           for name, share in cpu.items() if isinstance(share, dict) and "cpu_seconds" in share}
    total = sum(per.values())
    if not total:
        return None
    return {"us": per, "ceiling_per_second": round(cpus * 1e6 / total, 1) if cpus else None}


def build_profile(statements, units, unit, top=STATEMENTS_TOP):
    """A phase's database time from pg_stat_statements' rows (top-level?, calls, total ms, rows,
    query), ordered by total time: the top-level statements' sum per `unit` (a function's nested
    statements are inside its call's time, so they are not added again), and the `top`
    statements, nested ones included and marked."""
    statements = [{"top_level": t, "calls": c, "total_ms": ms, "rows": n, "query": text}
                  for t, c, ms, n, text in statements]
    total = sum(s["total_ms"] for s in statements if s["top_level"])
    profile = {
        "definition": f"sum of total_exec_time (execution, not planning) of the top-level statements run in "
                      f"the bench database while the phase ran, the bench's own left out, per {unit}",
        PLURAL[unit]: units,
        "ms_per_" + unit: round(total / units, 4),
        "top_level_statements": sum(1 for s in statements if s["top_level"]),
        "top_level_calls_per_" + unit: round(sum(s["calls"] for s in statements if s["top_level"]) / units, 2),
        "top": [{"calls_per_" + unit: round(s["calls"] / units, 3),
                 "ms_per_call": round(s["total_ms"] / s["calls"], 4) if s["calls"] else None,
                 "ms_per_" + unit: round(s["total_ms"] / units, 4),
                 "rows_per_call": round(s["rows"] / s["calls"], 1) if s["calls"] else None,
                 "nested": not s["top_level"], "query": s["query"]}
                for s in statements[:top]],
    }
    return profile


def profile_lines(profile, phase, units, unit, top=STATEMENTS_TOP):
    """The profile as the lines the bench logs."""
    lines = [f"{phase}: database time {profile['ms_per_' + unit]:.3f} ms per {unit} "
             f"({units:,} {PLURAL[unit]}, {profile['top_level_statements']} top-level statements); top {top} by time:",
             f"  {'calls/' + unit:>14} {'ms/call':>9} {'ms/' + unit:>12}  query (first 80 characters)"]
    for s in profile["top"]:
        lines.append(f"  {s['calls_per_' + unit]:>14.3f} {s['ms_per_call'] or 0:>9.4f} {s['ms_per_' + unit]:>12.4f}  "
                     + ("(nested) " if s["nested"] else "") + s["query"])
    return lines


def pgbench_figures(output):
    """(tps, average latency in ms) from pgbench's output; None for what it does not say."""
    tps = latency = None
    for line in output.splitlines():
        if line.startswith("tps = "):
            tps = float(line.split()[2])
        if line.startswith("latency average = "):
            latency = float(line.split()[3])
    return tps, latency


def tally(requests):
    """nginx's requests [(arrival, delivery id, connection number, status)] as (first arrival per
    delivery id, requests, TCP connections, answers other than 204)."""
    arrivals, connections, other = {}, set(), 0
    for arrived, delivery_id, connection, status in requests:
        arrivals.setdefault(delivery_id, arrived)
        connections.add(connection)
        other += status != 204
    return arrivals, len(requests), len(connections), other


def history_removal(delete, drop):
    """Removing a day of history: DELETE's and the partition drop's figures ({seconds, wal_bytes,
    bytes_before, bytes_returned} each), rounded, and the drop's WAL as a percentage of DELETE's."""

    def shown(f):
        return {"seconds": r(f["seconds"], 3), "wal_mib": r(f["wal_bytes"] / 1048576, 2),
                "mib_before": r(f["bytes_before"] / 1048576, 1), "mib_returned": r(f["bytes_returned"] / 1048576, 1)}

    wal_percent = r(100 * drop["wal_bytes"] / delete["wal_bytes"], 3) if delete["wal_bytes"] else None
    return {"delete": shown(delete), "drop": shown(drop), "drop_wal_percent_of_delete": wal_percent}
