"""A recorded chaos run, small enough to read: one event (job 101, user-1) fanned out to a
healthy endpoint (delivered on its first attempt) and to the 410 one (failed at once, a dead
letter), with the phases' records and the samples a passing run leaves. `recorded_run()` returns
(run, rows) as scripts/webhook_tools/chaos/analysis reads them; each test changes one thing."""

import copy
import hashlib
import json
from types import SimpleNamespace

from webhook_tools.chaos.analysis import Analysis, run_checks

PAYLOAD_1 = json.dumps({"event": "integration.connected", "delivery": "d1"})
PAYLOAD_2 = json.dumps({"event": "integration.connected", "delivery": "d2"})


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def attempt(id, job_id, kind, n, outcome, started, finished, worker="chaos-1-1", error=None):
    return {"id": id, "job_id": job_id, "kind": kind, "attempt": n, "worker_id": worker, "outcome": outcome,
            "error": error, "started": started, "finished": finished}


def receipt(t, delivery, path, status, payload, late=False, signature=True, closed=None):
    endpoint = path.strip("/").split("/")[0]
    r = {"t": t, "path": path, "endpoint": endpoint, "delivery": delivery, "body_sha": sha(payload),
         "status": status, "late": late, "signature": signature, "connection": 1, "length": len(payload),
         "body": payload.encode(), "headers": {}}
    if endpoint == "hang":
        r["closed"] = closed
    return r


ROWS = {
    "events": [{"seq": 1, "job_id": 101, "user_id": "user-1", "account_id": "acct-1-1", "created": 10.0}],
    "jobs": [
        {"job_id": 101, "kind": "integration.connected", "payload": {"user_id": "user-1"}, "created": 10.0},
        {"job_id": 201, "kind": "webhook.deliver", "payload": {"delivery_id": "d1"}, "created": 10.1},
        {"job_id": 202, "kind": "webhook.deliver", "payload": {"delivery_id": "d2"}, "created": 10.1},
    ],
    "expected": [{"job_id": 101, "client": "client-healthy-1"}, {"job_id": 101, "client": "client-gone"}],
    "attempts": [
        attempt(1, 101, "integration.connected", 1, "succeeded", 10.0, 10.1),
        attempt(2, 201, "webhook.deliver", 1, "succeeded", 10.2, 10.3),
        attempt(3, 202, "webhook.deliver", 1, "failed", 10.2, 10.3,
                error="permanent failure: HTTP 410 from http://127.0.0.1:1/gone"),
    ],
    "dead_letters": [{"id": 1, "job_id": 202, "kind": "webhook.deliver", "payload": {"delivery_id": "d2"},
                      "reason": "permanent_failure", "last_error": "HTTP 410", "attempts": 1, "max_attempts": 4}],
    "deliveries": [
        {"delivery_id": "d1", "source_job_id": 101, "oauth_client_id": "client-healthy-1", "user_id": "user-1",
         "status": "delivered", "attempts": 1, "last_http_status": 200, "last_error": None, "payload": PAYLOAD_1,
         "created": 10.1, "delivered": 10.3},
        {"delivery_id": "d2", "source_job_id": 101, "oauth_client_id": "client-gone", "user_id": "user-1",
         "status": "failed", "attempts": 1, "last_http_status": 410, "last_error": "HTTP 410", "payload": PAYLOAD_2,
         "created": 10.1, "delivered": None},
    ],
    "delivery_attempts": [
        {"delivery_id": "d1", "attempt": 1, "job_id": 201, "worker_id": "chaos-1-1", "http_status": 200,
         "error_class": None, "error": None, "duration_ms": 5, "attempted": 10.3},
        {"delivery_id": "d2", "attempt": 1, "job_id": 202, "worker_id": "chaos-1-1", "http_status": 410,
         "error_class": "http_status", "error": "HTTP 410", "duration_ms": 5, "attempted": 10.3},
    ],
    "endpoints": [
        {"key": "client:client-hanging", "state": "open", "consecutive_failures": 5, "trips": 2, "failures": 8,
         "recoveries": 0, "ever_succeeded": False, "disabled_by": None},
        {"key": "client:client-healthy-1", "state": "closed", "consecutive_failures": 0, "trips": 0, "failures": 0,
         "recoveries": 0, "ever_succeeded": True, "disabled_by": None},
    ],
    "receipts": [
        receipt(10.25, "d1", "/healthy/1", 200, PAYLOAD_1),
        receipt(10.25, "d2", "/gone", 410, PAYLOAD_2),
    ],
}

CLIENTS = {  # client id -> (behaviour, url path)
    "client-healthy-1": ("healthy", "/healthy/1"),
    "client-gone": ("gone", "/gone"),
    "client-fail": ("fail", "/fail"),
    "client-hanging": ("hang", "/hang"),
    "client-wrong-scope": ("never", "/never/scope"),
}


def recorded_run(tmp_path):
    """(run, rows): a copy each time, the replicas' logs in the empty folder `tmp_path`."""
    run = SimpleNamespace(
        url="postgresql:///nowhere", pg_dir=str(tmp_path / "pg"), logdir=str(tmp_path),
        seconds=20, replica_count=3, seed=7, keep_logs=False, started_at=0.0,
        inserted=[(1, 101)], seq_base=0, insert_failures=0, insert_outage=0.0,
        leftovers=[], stuck=[], drained=True, drain_timeout=120, drain_seconds=3.0,
        client_behaviour={cid: c[0] for cid, c in CLIENTS.items()},
        client_of={c[0]: cid for cid, c in CLIENTS.items() if c[0] not in ("healthy", "never")},
        client_by_path={c[1]: cid for cid, c in CLIENTS.items()},
        operator=None, problems={}, kills=[], graceful=[], terminations=[], pg_restarts=[],
        generations=[], unexpected_exits=[], start_refusals=[], peak_rss={"chaos-1-1": 40960},
        receiver_connections=2,
        lock_phase={"jobs": [101], "t0": 1.0, "t1": 10.0, "held": 9.0, "waiting": 3, "settled": 1.0,
                    "settled_at": 11.0, "lingering": 0},
        pg_down_stop={"worker_id": "chaos-2-1", "status": 0, "seconds": 1.25, "late_status": None,
                      "late_seconds": None, "pg_down": 3.0},
        connect_window={"t0": 30.0, "t1": 33.0, "watched_until": 34.0, "initial": 3, "fresh": 5, "queries": 420,
                        "running": ["chaos-1-1", "chaos-2-2", "chaos-3-1"], "listening_after": 3},
        sampler=SimpleNamespace(samples=400, peak={"client:client-hanging": 4, "client:client-healthy-1": 1},
                                peak_at={"client:client-hanging": 12.0, "client:client-healthy-1": 10.2},
                                opened={"client:client-hanging": 2}, finished=40.0, longest_gap=0.2,
                                failures=0),
    )
    return run, copy.deepcopy(ROWS)


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


def resent_after_a_lost_attempt(rows):
    """d1's first attempt sent its request and was lost (its lease expired); the job ran again
    and sent it again: a duplicate."""
    rows["attempts"][1] = attempt(2, 201, "webhook.deliver", 1, "lost", 10.2, 13.2, worker="chaos-2-1")
    rows["attempts"].append(attempt(4, 201, "webhook.deliver", 2, "succeeded", 13.5, 13.6))
    rows["receipts"].insert(0, receipt(10.22, "d1", "/healthy/1", 200, PAYLOAD_1))
    rows["receipts"][1]["t"] = 13.55
    rows["delivery_attempts"][0]["attempted"] = 13.6
