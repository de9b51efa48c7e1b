"""BENCH_REPEAT: a throughput phase judged on its median run."""

from webhook_tools.bench.figures import median_run
from webhook_tools.bench.report import runs


def rated(*rates):
    return [{"deliveries_per_second": rate, "n": n} for n, rate in enumerate(rates)]


def test_one_run_is_itself_without_a_list_of_runs():
    only = rated(2000.0)
    assert median_run(only) == only[0]
    assert median_run([]) is None


def test_the_median_run_keeps_its_own_figures_and_every_rate_in_order():
    result = median_run(rated(3100.0, 2800.0, 3500.0))
    assert result["n"] == 0 and result["deliveries_per_second"] == 3100.0
    assert result["runs"] == [3100.0, 2800.0, 3500.0]


def test_an_even_count_takes_the_lower_middle_and_a_failed_run_ranks_lowest():
    result = median_run(rated(3000.0, None, 2500.0, 3200.0))
    assert result["deliveries_per_second"] == 2500.0
    assert result["runs"] == [3000.0, None, 2500.0, 3200.0]


def test_the_report_lists_the_runs_only_when_there_were_several():
    rows = []

    def add(phase, metric, value, target=None):
        rows.append((phase, metric, value))

    runs(add, "delivery", {"deliveries_per_second": 2000.0})
    assert rows == []
    runs(add, "delivery", median_run(rated(3100.0, None, 3500.0)))
    assert rows == [("delivery", "  each of 3 runs, in order (the median's figures shown)", "3,100.0 / - / 3,500.0")]
