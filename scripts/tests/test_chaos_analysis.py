"""The chaos run's checks on a recorded run (chaos_fixtures.py) that passes, and on the same run
with one thing changed that each check must catch."""

import pytest
from chaos_fixtures import PAYLOAD_1, attempt, receipt, recorded_run

from webhook_tools.chaos.analysis import CHECKS, Analysis, run_checks
from webhook_tools.chaos.analysis.figures import figures
from webhook_tools.chaos.analysis.report import report


def analyse(run, rows):
    an = Analysis(run, rows)
    run_checks(an)
    return an


def failing(an):
    return [name for name, problems in an.violations.items() if problems]


def problems_of(an, prefix):
    """The problems of the one check whose name starts with `prefix`."""
    names = [name for name in an.violations if name.startswith(prefix)]
    assert len(names) == 1, f"{prefix!r} names {names}"
    return an.violations[names[0]]


@pytest.fixture
def recorded(tmp_path):
    return recorded_run(tmp_path)


def test_the_recorded_run_passes_every_check(recorded):
    an = analyse(*recorded)
    assert failing(an) == []
    # Matching, the replicas' and the isolation checks record two each.
    assert len(an.violations) == len(CHECKS) + 3 == 16
    assert "lock held 9.0s over 3 leases: 1 events, 1 deliveries delivered (+1 failed or pending at misbehaving " \
        "endpoints), 0 duplicates, 0 lost" in an.violations


def test_the_report_of_a_passing_run(recorded, capsys):
    an = analyse(*recorded)
    figures(an)
    assert report(an) == 0
    out = capsys.readouterr().out
    assert f"CHAOS PASS: {len(an.violations)} of {len(an.violations)} checks passed" in out
    assert "[FAIL]" not in out


def test_figures_of_the_recorded_run(recorded):
    an = analyse(*recorded)
    figures(an)
    fig = an.figures
    assert fig["events inserted"] == 1
    assert fig["events fanned out / dead-lettered"] == "1 / 0"
    assert fig["delivered / failed / cancelled / pending"] == "1 / 1 / 0 / 0"
    assert fig["by endpoint (delivered/failed[/cancelled])"] == "gone 0/1, healthy 1/0"
    assert fig["duplicates (explained / unexplained)"] == "0 (0 / 0)"
    assert fig["healthy insert->delivery p50 / p99 / max"].startswith("0.250s / 0.250s / 0.250s")
    assert fig["peak RSS (VmHWM) of replicas"] == "40.0 MiB (chaos-1-1)"


# -- 1 to 7: events, jobs, deliveries, endpoints, receipts ---------------------------------------


def test_an_acknowledged_insert_that_was_not_recorded_fails(recorded):
    run, rows = recorded
    run.inserted.append((2, 102))
    an = analyse(run, rows)
    assert problems_of(an, "every insert is one event job") == ["insert 2 (job 102) acknowledged but not recorded"]


def test_a_job_that_ended_twice_fails(recorded):
    run, rows = recorded
    rows["attempts"].append(attempt(4, 101, "integration.connected", 2, "succeeded", 10.4, 10.5))
    an = analyse(run, rows)
    assert problems_of(an, "every job ended exactly once") == [
        "integration.connected job 101: 2 succeeded/cancelled attempt(s) and 0 dead letter(s)"]


def test_a_job_left_in_the_queue_fails(recorded):
    run, rows = recorded
    run.drained = False
    an = analyse(run, rows)
    assert problems_of(an, "nothing left in the queue") == ["the queue did not drain within 120s"]


def test_a_missing_recipient_fails(recorded):
    run, rows = recorded
    rows["expected"].append({"job_id": 101, "client": "client-fail"})
    an = analyse(run, rows)
    assert len(problems_of(an, "every event fanned out to exactly its expected recipients")) == 1


def test_a_pending_delivery_fails(recorded):
    run, rows = recorded
    rows["deliveries"][0]["status"] = "pending"
    an = analyse(run, rows)
    assert "delivery d1 (client-healthy-1) still pending" in problems_of(an, "every delivery ended")


def test_a_healthy_endpoint_that_failed_fails(recorded):
    run, rows = recorded
    rows["deliveries"][0]["status"] = "failed"
    an = analyse(run, rows)
    assert problems_of(an, "healthy endpoints delivered")[0].startswith("healthy endpoint: failed")


def test_a_call_to_a_non_recipient_fails(recorded):
    run, rows = recorded
    rows["receipts"].append(receipt(10.5, "d1", "/never/scope", 200, PAYLOAD_1))
    an = analyse(run, rows)
    assert any("which no recipient has" in p for p in problems_of(an, "healthy endpoints delivered"))


@pytest.mark.parametrize("change, expected", [
    (lambda r: r.update(body_sha="0" * 64), "body differs from the stored payload"),
    (lambda r: r.update(signature=False), "signature headers wrong"),
    (lambda r: r.update(path="/gone"), "arrived at /gone"),
])
def test_a_wrong_request_fails(recorded, change, expected):
    run, rows = recorded
    change(rows["receipts"][0])
    an = analyse(run, rows)
    assert any(expected in p for p in problems_of(an, "receivers got the stored bytes"))


def test_delivered_without_an_accepted_request_fails(recorded):
    run, rows = recorded
    rows["receipts"][0]["late"] = True
    an = analyse(run, rows)
    assert any(p.startswith("delivered, but the receiver never accepted it")
               for p in problems_of(an, "receivers got the stored bytes"))


# -- 8: requests matched to attempts; duplicates -----------------------------------------------


def resent_after_a_lost_attempt(rows):
    """d1's first attempt sent its request and was lost (its lease expired); the job ran again
    and sent it again: a duplicate."""
    rows["attempts"][1] = attempt(2, 201, "webhook.deliver", 1, "lost", 10.2, 13.2, worker="chaos-2-1")
    rows["attempts"].append(attempt(4, 201, "webhook.deliver", 2, "succeeded", 13.5, 13.6))
    rows["receipts"].insert(0, receipt(10.22, "d1", "/healthy/1", 200, PAYLOAD_1))
    rows["receipts"][1]["t"] = 13.55
    rows["delivery_attempts"][0]["attempted"] = 13.6


def test_an_unexplained_duplicate_fails(recorded):
    run, rows = recorded
    resent_after_a_lost_attempt(rows)
    an = analyse(run, rows)
    assert failing(an) == [
        "every duplicate is explained by a kill -9, a graceful stop (released) or a database fault",
        "lock held 9.0s over 3 leases: 1 events, 1 deliveries delivered (+1 failed or pending at misbehaving "
        "endpoints), 1 duplicates, 1 lost"]
    assert an.duplicates == 1 and an.unexplained_duplicates == 1 and an.accepted_twice == 1


def test_a_duplicate_explained_by_a_kill_passes(recorded):
    run, rows = recorded
    resent_after_a_lost_attempt(rows)
    run.lock_phase["jobs"] = []  # the lock phase wants none; here the run's duplicate check alone
    run.kills.append({"worker_id": "chaos-2-1", "t": 10.3, "restarted": 11.0})
    an = analyse(run, rows)
    assert failing(an) == []
    assert an.duplicates == 1 and an.unexplained_duplicates == 0 and an.causes == {"kill -9": 1}


def test_a_kill_before_the_request_explains_nothing(recorded):
    run, rows = recorded
    resent_after_a_lost_attempt(rows)
    run.kills.append({"worker_id": "chaos-2-1", "t": 10.1, "restarted": 11.0})  # before the attempt began
    an = analyse(run, rows)
    assert an.unexplained_duplicates == 1


def test_a_request_no_attempt_recorded_fails(recorded):
    run, rows = recorded
    rows["delivery_attempts"].pop(0)
    an = analyse(run, rows)
    assert problems_of(an, "every request belongs to exactly one attempt")[0].startswith(
        "1 job attempts sent a request but 0 delivery attempts were recorded")


def test_two_requests_in_one_attempt_fail(recorded):
    run, rows = recorded
    rows["receipts"].append(receipt(10.28, "d1", "/healthy/1", 200, PAYLOAD_1))
    an = analyse(run, rows)
    assert any(p.startswith("2 requests within one attempt")
               for p in problems_of(an, "every request belongs to exactly one attempt"))


# -- 9 to 12: replicas and the phases ----------------------------------------------------------


def test_a_replica_that_exited_on_its_own_fails(recorded):
    run, rows = recorded
    run.problems = {"no replica exits on its own": ["chaos-1-1 exited by itself with status 1"]}
    an = analyse(run, rows)
    assert failing(an) == ["no replica exits on its own"]


def test_a_lock_held_for_less_than_three_leases_fails(recorded):
    run, rows = recorded
    run.lock_phase["held"] = 8.5
    an = analyse(run, rows)
    assert problems_of(an, "lock held 8.5s") == ["the lock was held 8.50s, less than 3 leases (9s)"]


def test_a_lock_phase_that_did_not_settle_fails(recorded):
    run, rows = recorded
    run.lock_phase["settled"] = None
    an = analyse(run, rows)
    assert problems_of(an, "lock held")[0].startswith("the phase's jobs had not finished 60s after the lock went")


def test_a_lock_phase_that_did_not_run_fails(recorded):
    run, rows = recorded
    run.lock_phase = None
    an = analyse(run, rows)
    assert failing(an) == ["lock held over 3 leases: the phase did not run"]


def test_sigterm_while_postgresql_was_down(recorded):
    run, rows = recorded
    assert problems_of(analyse(run, rows), "SIGTERM while PostgreSQL was down: chaos-2-1 exited 0 after 1.25s") == []
    run.pg_down_stop.update(status=1)
    assert len(problems_of(analyse(run, rows), "SIGTERM while PostgreSQL was down")) == 1
    run.pg_down_stop.update(status=None, seconds=None, late_status=0, late_seconds=9.5)
    an = analyse(run, rows)
    assert problems_of(an, "SIGTERM while PostgreSQL was down: chaos-2-1 still running after 7.0s")[0].startswith(
        "chaos-2-1 did not exit within 7.0s of SIGTERM")


def test_a_crash_in_the_connect_window_fails(recorded, tmp_path):
    run, rows = recorded
    (tmp_path / "chaos-3-1.log").write_text(
        '{"level": "warning", "message": "could not connect"}\n'
        "*** Program crashed: Bad pointer dereference at 0x0 ***\n"
        "Thread 3 crashed:\n"
        "0 PQConnection.read() in webhook-worker at /src/Sources/LibPQ/Connection.swift:42:7\n")
    an = analyse(run, rows)
    (problem,) = problems_of(an, "pg_terminate_backend right after connect for 3.0s: 8 backends terminated")
    assert problem.startswith("chaos-3-1 wrote a crash report")
    assert "first own frame: 0 PQConnection.read() in webhook-worker at /src/Sources/LibPQ/Connection.swift" in problem


def test_an_exit_in_the_connect_window_fails_and_one_outside_it_does_not(recorded):
    run, rows = recorded
    run.unexpected_exits = [{"worker_id": "chaos-9-9", "status": -11, "t": 31.0}]  # never in the window
    assert failing(analyse(run, rows)) == []
    run.unexpected_exits.append({"worker_id": "chaos-2-2", "status": -11, "t": 31.0})
    (problem,) = problems_of(analyse(run, rows), "pg_terminate_backend right after connect")
    assert problem.startswith("chaos-2-2 killed by signal 11")


def test_a_connect_window_that_terminated_nothing_fails(recorded):
    run, rows = recorded
    run.connect_window["fresh"] = 0
    assert problems_of(analyse(run, rows), "pg_terminate_backend right after connect") == [
        "no freshly opened backend was terminated in 420 queries: the window tested nothing"]


# -- 13 and 14: endpoint isolation -------------------------------------------------------------


def test_more_deliveries_in_flight_than_the_endpoint_limit_fails(recorded):
    run, rows = recorded
    run.sampler.peak["client:client-healthy-1"] = 5
    (problem,) = problems_of(analyse(run, rows), "at most 4 deliveries in flight per endpoint")
    assert problem.startswith("client:client-healthy-1: 5 deliveries running at once")


def hanging_requests(rows, count, attempt_outcome="failed"):
    """`count` requests to the hanging endpoint open at once (12.0 to 13.0), each its own
    delivery whose single attempt timed out."""
    for n in range(count):
        d, job = f"h{n}", 300 + n
        rows["jobs"].append({"job_id": job, "kind": "webhook.deliver", "payload": {"delivery_id": d}, "created": 11})
        rows["attempts"].append(attempt(10 + n, job, "webhook.deliver", 1, attempt_outcome, 11.9, 13.0,
                                        error="timeout: http://127.0.0.1:1/hang"))
        rows["receipts"].append(receipt(12.0 + n / 100, d, "/hang", "hang", "{}", closed=13.0))


def test_the_receiver_counts_requests_open_at_once(recorded):
    run, rows = recorded
    hanging_requests(rows, 4)
    an = Analysis(run, rows)
    an.receipt_attempt = {}
    from webhook_tools.chaos.analysis.isolation import receiver_in_flight
    assert receiver_in_flight(an, "hang", 40.0) == (4, [])
    hanging_requests(rows, 5)
    an = Analysis(run, rows)
    an.receipt_attempt = {}
    peak, unexplained = receiver_in_flight(an, "hang", 40.0)
    assert peak == 9 and len(unexplained) == 5


def test_the_hanging_circuit_must_open_and_never_close(recorded):
    run, rows = recorded
    rows["endpoints"][0].update(trips=0)
    run.sampler.opened = {}
    (problem,) = problems_of(analyse(run, rows), "hanging endpoint's circuit opened")
    assert "the circuit never opened" in problem
    rows["endpoints"][0].update(trips=3, state="closed", recoveries=1)
    (problem,) = problems_of(analyse(run, rows), "hanging endpoint's circuit opened")
    assert "though it never answered" in problem


def test_a_job_that_never_ended_fails(recorded):
    run, rows = recorded
    rows["attempts"][0]["outcome"] = "lost"
    an = analyse(run, rows)
    assert problems_of(an, "every job ended exactly once") == [
        "integration.connected job 101: 0 succeeded/cancelled attempt(s) and 0 dead letter(s)"]


def test_a_job_over_its_attempts_fails(recorded):
    run, rows = recorded
    rows["attempts"][2:3] = [attempt(3 + n, 202, "webhook.deliver", n, "failed", 10 + n, 10.1 + n) for n in range(5)]
    an = analyse(run, rows)
    assert "webhook.deliver job 202: 5 counted attempts, more than 4" in problems_of(an, "every job ended exactly once")


def test_a_kill_of_another_replica_explains_nothing(recorded):
    run, rows = recorded
    resent_after_a_lost_attempt(rows)
    run.kills.append({"worker_id": "chaos-1-1", "t": 10.3, "restarted": 11.0})
    assert analyse(run, rows).unexplained_duplicates == 1


def test_a_postgresql_restart_during_the_attempt_explains_it(recorded):
    run, rows = recorded
    resent_after_a_lost_attempt(rows)
    run.pg_restarts.append({"t0": 11.0, "t1": 12.0, "kind": "restart"})
    an = analyse(run, rows)
    assert an.unexplained_duplicates == 0 and an.causes == {"PostgreSQL restart": 1}


# -- the receiver's endpoints ------------------------------------------------------------------


def test_each_endpoint_answers_as_its_name_says():
    from webhook_tools.chaos.receiver import answer, expected_signatures

    drawn = []

    def never(p):
        drawn.append(p)
        return False

    def always(p):
        drawn.append(p)
        return True

    assert [answer(e, never, lambda: 503) for e in ("healthy", "flaky", "slow", "reset", "fail", "gone", "never",
                                                      "flap", "hang")] == [
        (200, 0.0), (200, 0.0), (200, 0.0), (200, 0.0), (500, 0.0), (410, 0.0), (500, 0.0), (503, 0.0),
        ("hang", 0.0)]
    assert drawn == [0.30, 0.40, 0.40]  # only the flaky, slow and reset endpoints draw
    assert [answer(e, always, lambda: 200) for e in ("flaky", "slow", "reset")] == [
        (500, 0.0), (200, 2.0), ("reset", 0.0)]
    legacy, standard = expected_signatures("plain-secret", "d1", "1700000000", b"{}")
    assert len(legacy) == 64 and standard.startswith("v1,")


def test_the_report_of_a_failing_run(recorded, capsys, tmp_path):
    run, rows = recorded
    run.url = "postgresql://127.0.0.1:1/none?connect_timeout=1"  # the dump of the rows fails, and says so
    rows["deliveries"][0]["status"] = "pending"
    an = analyse(run, rows)
    figures(an)
    assert report(an) == 1
    out = capsys.readouterr().out
    assert "  [FAIL] every delivery ended delivered, failed (dead letter) or cancelled: 1 violation(s)" in out
    assert "--- every delivery ended delivered, failed (dead letter) or cancelled\ndelivery d1 (client-healthy-1) " \
        "still pending" in out
    assert f"CHAOS FAIL: {len(an.violations) - 3} of {len(an.violations)} checks passed" in out
    assert (tmp_path / "db" / "faults.json").exists()


def test_a_released_attempt_is_explained_by_a_graceful_stop_of_its_replica_only(recorded):
    run, rows = recorded
    resent_after_a_lost_attempt(rows)
    rows["attempts"][1]["outcome"] = "released"
    run.lock_phase["jobs"] = []
    run.kills.append({"worker_id": "chaos-2-1", "t": 10.3, "restarted": 11.0})  # explains lost, not released
    assert analyse(run, rows).unexplained_duplicates == 1
    run.graceful.append({"worker_id": "chaos-2-1", "t": 10.5, "exited": 11.0, "status": 0, "seconds": 0.5})
    an = analyse(run, rows)
    assert an.unexplained_duplicates == 0 and an.causes == {"graceful stop": 1}
    assert failing(an) == []


def test_log_lines():
    from webhook_tools.chaos.logs import is_error_line, one_line, parse_log_line

    assert parse_log_line('{"level": "error", "message": "x"}') == {"level": "error", "message": "x"}
    assert parse_log_line("FATAL:  terminating connection due to administrator command") is None
    assert parse_log_line("[1, 2]") is None
    assert is_error_line('{"level": "critical", "message": "x"}')
    assert not is_error_line('{"level": "warning", "message": "lease lost"}')
    assert is_error_line("Fatal error: Unexpectedly found nil")
    assert not is_error_line("NOTICE:  relation exists")
    assert one_line("a\n  b\tc", 3) == "a b"
