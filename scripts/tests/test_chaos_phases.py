"""The chaos run's checks of the replicas, the phases with checks of their own and endpoint
isolation, on the recorded run (chaos_fixtures.py) and on copies with one thing changed; the
receiver's endpoints and the replicas' log lines."""

from chaos_fixtures import analyse, attempt, failing, problems_of, receipt, resent_after_a_lost_attempt

from webhook_tools.chaos.analysis import Analysis

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
