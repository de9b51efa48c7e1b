"""The chaos run's checks of events, jobs, deliveries, endpoints, requests and duplicates on a
recorded run (chaos_fixtures.py) that passes, and on the same run with one thing changed that
each check must catch; and the report."""

import pytest
from chaos_fixtures import PAYLOAD_1, analyse, attempt, failing, problems_of, receipt, resent_after_a_lost_attempt

from webhook_tools.chaos.analysis import CHECKS
from webhook_tools.chaos.analysis.figures import figures
from webhook_tools.chaos.analysis.report import report


def test_the_recorded_run_passes_every_check(recorded):
    an = analyse(*recorded)
    assert failing(an) == []
    # Matching, the replicas' and the isolation checks record two each.
    assert len(an.violations) == len(CHECKS) + 3 == 17
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
