"""The checks of what became of every event, job and delivery, and of what the receiver got
(checks 1 to 7 of the run's docstring)."""

import collections
import hashlib

from ..logs import one_line
from ..settings import MAX_ATTEMPTS, stamp


def check_inserts(an):
    c = an.c
    events = an.events
    event_jobs = an.event_jobs

    # 1. Every acknowledged insert is an event; every event a job.
    problems = []
    acknowledged = dict(c.inserted)
    recorded = {e["seq"]: e["job_id"] for e in events}
    for seq, job_id in acknowledged.items():
        if recorded.get(seq) != job_id:
            problems.append(f"insert {seq} (job {job_id}) acknowledged but not recorded")
    for e in events:
        if e["job_id"] not in an.jobs:
            problems.append(f"event job {e['job_id']} never reached webhook_worker.jobs")
    stray = [j for j in an.jobs.values() if j["kind"] == "integration.connected" and j["job_id"] not in event_jobs]
    for j in stray:
        problems.append(f"integration.connected job {j['job_id']} that the web app did not insert")
    an.check("every insert is one event job", problems)



def check_jobs_ended(an):
    event_jobs = an.event_jobs

    # 2. Every job ended exactly once: succeeded or cancelled, or a dead letter.
    problems = []
    handled_events = dead_events = 0
    for job_id, job in an.jobs.items():
        rows = an.attempts.get(job_id, [])
        terminal = [a for a in rows if a["outcome"] in ("succeeded", "cancelled")]
        letters = an.dead.get(job_id, [])
        total = len(terminal) + len(letters)
        if total != 1:
            problems.append(f"{job['kind']} job {job_id}: {len(terminal)} succeeded/cancelled attempt(s) and "
                            f"{len(letters)} dead letter(s)")
        # Attempts the job spent: not releases, nor the row an operator's cancel writes.
        counted = [a for a in rows if a["outcome"] != "released" and a["worker_id"] != "operator"]
        if len(counted) > MAX_ATTEMPTS:
            problems.append(f"{job['kind']} job {job_id}: {len(counted)} counted attempts, more than {MAX_ATTEMPTS}")
        if job_id in event_jobs:
            if any(a["outcome"] == "succeeded" for a in terminal):
                handled_events += 1
            elif letters:
                dead_events += 1
    an.handled_events, an.dead_events = handled_events, dead_events
    an.check("every job ended exactly once, within its attempts", problems)



def check_queue_empty(an):
    c = an.c

    # 3. Nothing left in the queue.
    problems = [f"job {j['id']} {j['kind']} {j['state']} attempt {j['attempt']} locked by {j['locked_by']} "
                f"last error {(j['last_error'] or '')[:120]}" for j in c.leftovers]
    problems += [f"job {j['id']} {j['kind']} running past its lease (held by {j['locked_by']})" for j in c.stuck]
    if not c.drained:
        problems.insert(0, f"the queue did not drain within {c.drain_timeout}s")
    an.check("nothing left in the queue", problems)



def check_fanout(an):
    events = an.events
    event_jobs = an.event_jobs

    # 4. Fan-out: exactly the expected recipients, once each.
    problems = []
    by_source = collections.defaultdict(list)
    for d in an.deliveries.values():
        by_source[d["source_job_id"]].append(d["oauth_client_id"])
    for e in events:
        got = by_source.get(e["job_id"], [])
        want = an.expected.get(e["job_id"], set())
        if sorted(got) != sorted(want):
            dead = an.dead.get(e["job_id"])
            why = f" (dead letter: {dead[0]['reason']}: {one_line(dead[0]['last_error'])})" if dead else ""
            problems.append(f"event job {e['job_id']} ({e['user_id']}): deliveries to {sorted(got)}, "
                            f"expected {sorted(want)}{why}")
    for source in by_source:
        if source not in event_jobs:
            problems.append(f"deliveries for job {source}, which is no event")
    for d in an.deliveries.values():
        jobs = an.deliver_job.get(d["delivery_id"], [])
        if len(jobs) != 1:
            problems.append(f"delivery {d['delivery_id']} has {len(jobs)} webhook.deliver jobs")
    an.check("every event fanned out to exactly its expected recipients", problems)



def check_deliveries_ended(an):

    # 5. Every delivery ended delivered, failed with a dead letter, or cancelled.
    problems = []
    for d in an.deliveries.values():
        jobs = an.deliver_job.get(d["delivery_id"], [])
        letters = [dl for j in jobs for dl in an.dead.get(j, [])]
        if d["status"] == "pending":
            problems.append(f"delivery {d['delivery_id']} ({d['oauth_client_id']}) still pending")
        elif d["status"] == "failed" and not letters:
            problems.append(f"delivery {d['delivery_id']} failed without a dead letter for its job")
        elif d["status"] == "delivered" and letters:
            problems.append(f"delivery {d['delivery_id']} delivered, yet its job is a dead letter")
        elif d["status"] == "cancelled" and not an.operator_cancelled(d):
            problems.append(f"delivery {d['delivery_id']} cancelled, though no client or grant changed")
        if d["attempts"] != len(an.delivery_attempts.get(d["delivery_id"], [])):
            problems.append(f"delivery {d['delivery_id']}: attempts {d['attempts']} but "
                            f"{len(an.delivery_attempts.get(d['delivery_id'], []))} delivery_attempts rows")
    for dl in an.dead_rows:
        if dl["kind"] == "webhook.deliver":
            delivery = an.deliveries.get((dl["payload"] or {}).get("delivery_id"))
            if delivery is None or delivery["status"] != "failed":
                problems.append(f"dead letter {dl['id']} (job {dl['job_id']}) whose delivery is "
                                f"{delivery['status'] if delivery else 'missing'}")
    an.check("every delivery ended delivered, failed (dead letter) or cancelled", problems)



def check_endpoints(an):
    c = an.c

    # 6. What each endpoint should come to.
    problems = []
    for d in an.deliveries.values():
        behaviour = c.client_behaviour.get(d["oauth_client_id"])
        jobs = an.deliver_job.get(d["delivery_id"], [])
        letters = [dl for j in jobs for dl in an.dead.get(j, [])]
        recorded_attempts = an.delivery_attempts.get(d["delivery_id"], [])
        if behaviour == "healthy" and d["status"] != "delivered":
            problems.append(f"healthy endpoint: {d['status']}\n" + an.describe_delivery(d["delivery_id"]))
        elif behaviour == "gone":
            statuses = [a["http_status"] for a in recorded_attempts]
            if d["status"] != "failed" or statuses.count(410) != 1 or (statuses and statuses[-1] != 410) \
                    or any(dl["reason"] != "permanent_failure" for dl in letters if statuses):
                problems.append("410 endpoint: not failed at once on its 410\n"
                                + an.describe_delivery(d["delivery_id"]))
        elif behaviour == "fail":
            # Failed after its attempts, or held by the open circuit until the operator
            # disabled the endpoint at the end (endpoint_disabled, fewer attempts).
            counted = an.counted_attempts(d)
            reasons = {dl["reason"] for dl in letters}
            disabled = reasons == {"endpoint_disabled"} and c.operator and c.operator["disabled"] and \
                counted <= MAX_ATTEMPTS
            if d["status"] != "failed" or not (disabled or (reasons == {"attempts_exhausted"}
                                                            and counted == MAX_ATTEMPTS)):
                problems.append("always-500 endpoint: not failed after its attempts, nor held until disabled\n"
                                + an.describe_delivery(d["delivery_id"]))
        elif behaviour == "hang":
            # Failed after its attempts, every one timed out; or still held by the open circuit
            # at the end and cancelled by the operator. Never delivered.
            counted = an.counted_attempts(d)
            not_timeouts = [a for a in recorded_attempts if a["error_class"] != "timeout"]
            if d["status"] == "failed":
                ok = {dl["reason"] for dl in letters} == {"attempts_exhausted"} and counted == MAX_ATTEMPTS
            else:
                ok = an.operator_cancelled(d) and counted < MAX_ATTEMPTS
            if not ok or not_timeouts:
                problems.append("hanging endpoint: not failed after its attempts (all timeouts), nor held "
                                "until cancelled\n" + an.describe_delivery(d["delivery_id"]))
        elif behaviour in ("flap", "degrade"):
            # Delivered, or failed after its attempts in a bad spell (503s, or 2 s answers).
            counted = an.counted_attempts(d)
            if not (d["status"] == "delivered" or (
                    d["status"] == "failed" and counted == MAX_ATTEMPTS
                    and {dl["reason"] for dl in letters} == {"attempts_exhausted"})):
                name = "flapping" if behaviour == "flap" else "degrading"
                problems.append(f"{name} endpoint: neither delivered nor failed after its attempts\n"
                                + an.describe_delivery(d["delivery_id"]))
        elif behaviour == "never" or behaviour is None:
            problems.append(f"delivery to {d['oauth_client_id']}, which is no recipient")
    for r in an.all_receipts:
        if r["endpoint"] == "never" or r["path"] not in c.client_by_path:
            problems.append(f"request to {r['path']} (delivery {r['delivery']}), which no recipient has")
    an.check("healthy endpoints delivered; 410 and always-500 endpoints failed; non-recipients never called; "
               "flapping ones delivered or failed after their attempts; hanging ones failed or cancelled", problems)



def check_receipts(an):
    c = an.c

    # 7. What the receivers got: bytes, signatures, the right endpoint; delivered means accepted.
    problems = []
    for r in an.all_receipts:
        d = an.deliveries.get(r["delivery"])
        if d is None:
            problems.append(f"request with unknown X-Webhook-Delivery '{r['delivery']}' to {r['path']}")
            continue
        if c.client_by_path.get(r["path"]) != d["oauth_client_id"]:
            problems.append(f"delivery {r['delivery']} for {d['oauth_client_id']} arrived at {r['path']}")
        if r["status"] == "truncated":
            continue
        if r["body_sha"] != hashlib.sha256(d["payload"].encode()).hexdigest():
            problems.append(f"delivery {r['delivery']}: body differs from the stored payload; request at "
                            f"{stamp(r['t'])} to {r['path']} answered {r['status']}, Content-Length "
                            f"{r['length']}, {len(r['body'])} bytes read, stored payload "
                            f"{len(d['payload'].encode())} bytes\n    received: {r['body'][:400]!r}\n"
                            f"    stored:   {d['payload'][:400]!r}\n    headers: {r['headers']}\n"
                            + an.describe_delivery(r["delivery"]))
        if not r["signature"]:
            problems.append(f"delivery {r['delivery']} to {r['path']}: signature headers wrong")
    for d in an.deliveries.values():
        if d["status"] == "delivered":
            accepted = [r for r in an.receipts.get(d["delivery_id"], []) if r["status"] == 200 and not r["late"]]
            if not accepted:
                problems.append("delivered, but the receiver never accepted it\n"
                                + an.describe_delivery(d["delivery_id"]))
    an.check("receivers got the stored bytes, signed, at the right URL; every delivered one was accepted",
               problems)
