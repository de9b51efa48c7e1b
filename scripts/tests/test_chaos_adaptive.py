"""The degrading endpoint's check: its adaptive limit cut to the floor during a slowdown and
raised again after it (recorded traces; no run)."""

from types import SimpleNamespace

import pytest
from chaos_fixtures import analyse, problems_of

from webhook_tools.chaos.analysis import adaptive

CHECK = "the adaptive limit follows a slowdown"
# Slow from 20 s to 28 s of the run.
WINDOW = (20.0, 28.0)
GOOD = [(5.0, 4), (21.2, 2), (22.4, 1), (33.0, 2), (33.4, 3), (33.9, 4)]


def with_degrading_endpoint(recorded, trace, seconds=60):
    run, rows = recorded
    run.seconds = seconds
    run.client_of["degrade"] = "client-degrade"
    run.client_behaviour["client-degrade"] = "degrade"
    run.receiver = SimpleNamespace(degraded_window=WINDOW)
    run.sampler.limits = {"client:client-degrade": trace}
    return run, rows


def test_follow_reads_the_limit_before_the_cut_and_the_raise():
    assert adaptive.follow(GOOD, *WINDOW) == (4, 22.4, 33.9)
    # Never sampled before the slowdown: the endpoint was at the limit every endpoint starts at.
    assert adaptive.follow([(21.0, 1), (30.0, 4)], *WINDOW) == (4, 21.0, 30.0)
    # Never cut, so never needing a raise.
    assert adaptive.follow([(5.0, 3)], *WINDOW) == (3, None, 28.0)


def test_a_cut_and_a_raise_in_time_pass(recorded):
    an = analyse(*with_degrading_endpoint(recorded, GOOD))
    assert problems_of(an, CHECK) == []
    assert "at 1 2.4s after the slowdown" in adaptive.figure(an)
    assert "back at 4 5.9s after the recovery" in adaptive.figure(an)


@pytest.mark.parametrize("trace, expected", [
    ([(5.0, 4), (21.2, 2), (33.9, 4)], "was not at 1 within 10s"),
    ([(5.0, 4), (21.2, 2), (22.4, 1), (59.0, 4)], "was not back at 4 within 30s"),
    ([(5.0, 4), (21.2, 2), (22.4, 1)], "was not back at 4 within 30s"),
])
def test_a_limit_that_lags_fails(recorded, trace, expected):
    problems = problems_of(analyse(*with_degrading_endpoint(recorded, trace)), CHECK)
    assert len(problems) == 1 and expected in problems[0]


def test_a_short_run_prints_the_trace_unchecked(recorded):
    an = analyse(*with_degrading_endpoint(recorded, [(5.0, 4)], seconds=20))
    assert problems_of(an, CHECK) == []
    assert "not checked: the run is shorter than 45s" in adaptive.figure(an)
