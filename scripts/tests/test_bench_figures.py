"""The benchmark's computations of figures, its targets and its table, on recorded inputs."""

import pytest

from webhook_tools.bench.figures import (
    build_profile,
    cpu_per_delivery,
    distribution,
    history_removal,
    pgbench_figures,
    profile_lines,
    r,
    slowest_over_overall,
    tally,
    tenth_rates,
)
from webhook_tools.bench.report import table_rows
from webhook_tools.bench.targets import targets
from webhook_tools.core import percentile


def test_percentile_interpolates_between_closest_ranks():
    assert percentile([], 50) is None
    assert percentile([7], 99) == 7
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_distribution_and_rounding():
    assert r(None) is None and r(1.26) == 1.3 and r(1.2345, 3) == 1.234
    assert distribution([1.0, 2.0, 3.0, 10.0]) == {"p50": 2.5, "p99": 9.8, "max": 10.0, "mean": 4.0}
    assert distribution([]) == {"p50": None, "p99": None, "max": None, "mean": None}


def test_tenth_rates_count_each_part_since_the_previous_ones_end():
    # 100 jobs from t=10: parts of 10 jobs, each ending 1 s after the previous one, but one slow part.
    ends = [11, 12, 13, 14, 16, 17, 18, 19, 20, 21]
    rates = tenth_rates(10.0, [(10, float(e)) for e in ends])
    assert rates == [10.0, 10.0, 10.0, 10.0, 5.0, 10.0, 10.0, 10.0, 10.0, 10.0]
    assert slowest_over_overall(rates, 100 / 11) == 0.55
    assert tenth_rates(10.0, [(10, 10.0)]) == [None]  # a part of no time
    assert slowest_over_overall([None], 5.0) is None and slowest_over_overall([4.0], None) is None


STATEMENTS = [  # top-level?, calls, total ms, rows, query; by total time
    (True, 1000, 300.0, 1000, "SELECT webhook_worker.claim_jobs($1)"),
    (False, 1000, 250.0, 1000, "UPDATE webhook_worker.jobs SET state = 'running'"),
    (True, 2000, 100.0, 2000, "INSERT INTO webhook_worker.job_attempts"),
]


def test_database_time_counts_top_level_statements_once():
    profile = build_profile(STATEMENTS, 500, "job", top=2)
    assert profile["jobs"] == 500
    assert profile["ms_per_job"] == 0.8                  # (300 + 100) / 500: the nested 250 is inside the call
    assert profile["top_level_statements"] == 2
    assert profile["top_level_calls_per_job"] == 6.0     # (1000 + 2000) / 500
    assert [s["nested"] for s in profile["top"]] == [False, True]
    assert profile["top"][0] == {"calls_per_job": 2.0, "ms_per_call": 0.3, "ms_per_job": 0.6, "rows_per_call": 1.0,
                                 "nested": False, "query": "SELECT webhook_worker.claim_jobs($1)"}
    lines = profile_lines(profile, "burn-down", 500, "job", top=2)
    assert lines[0] == "burn-down: database time 0.800 ms per job (500 jobs, 2 top-level statements); top 2 by time:"
    assert lines[3].endswith("(nested) UPDATE webhook_worker.jobs SET state = 'running'")


def test_pgbench_figures():
    output = ("transaction type: update_one_row.sql\nnumber of clients: 8\n"
              "latency average = 0.912 ms\ninitial connection time = 3.1 ms\ntps = 8765.432100 (without initial "
              "connection time)\n")
    assert pgbench_figures(output) == (8765.4321, 0.912)
    assert pgbench_figures("pgbench: error") == (None, None)


def test_nginx_tally_counts_deliveries_once_and_flags_other_answers():
    requests = [(1.0, "d1", 1, 204), (1.1, "d2", 1, 204), (1.5, "d1", 2, 204), (2.0, "d3", 2, 500)]
    arrivals, count, connections, other = tally(requests)
    assert arrivals == {"d1": 1.0, "d2": 1.1, "d3": 2.0}
    assert (count, connections, other) == (4, 2, 1)


def recorded_results():
    """What a short bench run left (the figures the targets and the table read)."""
    return {
        "environment": {"cpus": 2, "postgresql": {"fsync": "on", "synchronous_commit": "on"}},
        "burn_down_1_worker": {"workers": 1, "jobs_succeeded": 100000, "jobs_per_second": 25000.0,
                               "slowest_tenth_over_overall": 0.9, "database_time": {"ms_per_job": 0.031},
                               "peak_rss_mib": [30.5]},
        "delivery": {"events": 2000, "clients": 16, "deliveries_per_second": 4000.0,
                     "receiver_cpu_percent_of_one_core": 3.2, "database_time": {"ms_per_delivery": 0.2},
                     "cpu": {"seconds": 8.0, "worker": {"percent_of_one_core": 90.0},
                             "postgresql": {"percent_of_one_core": 70.0}, "nginx": {"percent_of_one_core": 3.2}},
                     "insert_to_receipt_ms": {"p50": 3000.0, "p99": 7000.0},
                     "deliveries_by_status": {"delivered": 32000}, "deliveries_expected": 32000,
                     "receiver_requests": 32000, "receiver_tcp_connections": 64, "peak_rss_mib": 70.0,
                     "cpu_per_delivery": {"us": {"worker": 225, "postgresql": 175, "nginx": 8},
                                          "ceiling_per_second": 4902.0}},
        "pickup_latency": {"error": "timed out after 600s waiting for the probe jobs to finish"},
    }


def test_targets_judge_the_figures():
    judged = targets(recorded_results())
    assert judged["deliveries_per_second"]["verdict"] == "floor met"    # 4,000: under 5,000, over 3,000
    assert judged["noop_drain"]["verdict"] == "met"                     # 25,000 >= 20,000
    assert judged["delivery_peak_rss"]["verdict"] == "MISSED"           # 70 MiB, not < 64
    assert judged["db_ms_per_delivery"]["verdict"] == "floor met"       # 0.2: over issue 11's 0.15, not 22's 0.2
    assert judged["pickup_p99_idle"]["verdict"] == "-"                  # the phase failed: no figure
    assert judged["isolation_in_flight"] == {"measure": "isolation: the hanging endpoint's requests in flight, peak",
                                             "value": None, "target": "≤ 4", "verdict": "-"}
    slower = recorded_results()
    slower["delivery"]["database_time"]["ms_per_delivery"] = 0.25
    assert targets(slower)["db_ms_per_delivery"]["verdict"] == "MISSED"


def test_the_table_rows():
    res = recorded_results()
    res["targets"] = targets(res)
    rows = table_rows(res, 100000)
    assert rows[0] == ("PostgreSQL", "fsync / synchronous_commit", "on / on", "", "")
    assert ("queue burn-down", "1 worker: jobs/s (100,000 no-op jobs)", "25,000.0", "≥ 20,000", "met") in rows
    assert ("delivery", "deliveries/s (2,000 events x 16 clients, 1 worker, nginx)", "4,000.0",
            "≥ 5,000 (floor 3,000)", "floor met") in rows
    assert ("delivery", "CPU, % of one core: worker / postgresql / nginx", "90.0 / 70.0 / 3.20", "", "") in rows
    assert ("delivery", "CPU per delivery (µs): worker / postgresql / nginx", "225 / 175 / 8", "", "") in rows
    assert ("delivery", "  most deliveries/s 2 cores give at that cost", "4,902.0", "", "") in rows
    assert ("pick-up latency", "", "FAILED", "", "") in rows


def test_cpu_per_delivery_and_the_ceiling_it_sets():
    # 32,000 deliveries in an 8 s window: 90 % of a core is 7.2 s, 225 µs a delivery.
    cpu = {"seconds": 8.0, "worker": {"cpu_seconds": 7.2, "percent_of_one_core": 90.0},
           "postgresql": {"cpu_seconds": 5.6, "percent_of_one_core": 70.0},
           "nginx": {"cpu_seconds": 0.256, "percent_of_one_core": 3.2}}
    per = cpu_per_delivery(cpu, 32000, 2)
    assert per["us"] == {"worker": 225, "postgresql": 175, "nginx": 8}
    assert per["ceiling_per_second"] == pytest.approx(2e6 / 408, abs=0.1)
    assert cpu_per_delivery(cpu, 0, 2) is None
    assert cpu_per_delivery({"seconds": 8.0}, 100, 2) is None  # no process measured
    assert cpu_per_delivery(cpu, 32000, None)["ceiling_per_second"] is None


def test_history_removal_figures():
    delete = {"seconds": 41.23456, "wal_bytes": 2 * 1048576 * 1000, "bytes_before": 1048576 * 900,
              "bytes_returned": 0}
    drop = {"seconds": 0.0421, "wal_bytes": 1048576, "bytes_before": 1048576 * 880, "bytes_returned": 1048576 * 880}
    figures = history_removal(delete, drop)
    assert figures["delete"] == {"seconds": 41.235, "wal_mib": 2000.0, "mib_before": 900.0, "mib_returned": 0.0}
    assert figures["drop"] == {"seconds": 0.042, "wal_mib": 1.0, "mib_before": 880.0, "mib_returned": 880.0}
    assert figures["drop_wal_percent_of_delete"] == 0.05
    assert history_removal({**delete, "wal_bytes": 0}, drop)["drop_wal_percent_of_delete"] is None


def test_history_targets_and_rows():
    res = recorded_results()
    res["history"] = {
        "attempt_rows_per_day": 50000,
        **history_removal(
            {"seconds": 2.5, "wal_bytes": 100 * 1048576, "bytes_before": 10 * 1048576, "bytes_returned": 0},
            {"seconds": 0.2, "wal_bytes": 2 * 1048576, "bytes_before": 10 * 1048576, "bytes_returned": 10 * 1048576}),
        "search": {"deliveries": 30000, "clients": 100, "queries": 200, "p50_ms": 0.8, "p95_ms": 1.5},
    }
    res["targets"] = judged = targets(res)
    assert judged["history_drop_seconds"]["verdict"] == "met"
    assert judged["history_drop_wal"]["verdict"] == "MISSED"     # 2 %: over 1 %
    assert judged["history_search_p95"]["verdict"] == "met"
    rows = table_rows(res, 100000)
    assert ("history", "remove a day (50,000 attempts) by partition drop: seconds", "0.20", "≤ 1", "met") in rows
    assert ("history", "  WAL written (MiB) / disk returned (MiB of 10.0)", "100.0 / 0.000", "", "") in rows
    assert ("history", "  p95 (ms)", "1.50", "≤ 100", "met") in rows
