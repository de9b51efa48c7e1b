"""Every request the receiver saw, matched to the job attempt that sent it; duplicates and
their causes."""

import collections

from ..settings import TOLERANCE, stamp


def match_receipts(an):
    """Assigns every request to the job attempt that sent it: the latest attempt of the
    delivery's job claimed before the request arrived. A recorded attempt (succeeded,
    failed) sent exactly one request; a dropped one (lost, released) at most one, and that
    request, whose outcome nobody recorded, is sent again later: a duplicate, which a kill -9
    of its replica, a graceful stop or a database fault must explain."""
    problems = []
    dup_problems = []
    an.duplicates = 0
    an.unexplained_duplicates = 0
    an.causes = collections.Counter()
    an.timeout_races = 0
    an.accepted_twice = 0
    an.late_arrivals = 0
    an.never_arrived = 0
    an.resent = collections.Counter()  # delivery -> requests sent again (for the lock phase)
    an.resent_at = collections.defaultdict(list)  # delivery -> when the request sent again was first sent
    an.receipt_attempt = {}  # id(receipt) -> the job attempt that sent it
    for delivery_id in sorted(set(an.receipts) | set(an.delivery_attempts)):
        receipts = an.receipts.get(delivery_id, [])
        jobs = an.deliver_job.get(delivery_id, [])
        rows = sorted((a for j in jobs for a in an.attempts.get(j, [])), key=lambda a: (a["started"], a["id"]))
        # Pair each recorded HTTP attempt with the job attempt that made it, in order: the job
        # attempts that sent a request are the succeeded ones and the failed ones whose error
        # names the URL; a failed one without it made no request (its handler failed before
        # sending, e.g. on a broken database connection).
        by_attempt_row = {}
        senders = [a for a in rows if a["outcome"] == "succeeded"
                   or (a["outcome"] == "failed"
                       and ("http://" in (a["error"] or "") or "https://" in (a["error"] or "")))]
        https = an.delivery_attempts.get(delivery_id, [])
        if len(senders) != len(https):
            problems.append(f"{len(senders)} job attempts sent a request but {len(https)} delivery attempts "
                            f"were recorded\n" + an.describe_delivery(delivery_id))
        else:
            for a, http in zip(senders, https, strict=True):
                if a["worker_id"] != http["worker_id"] or a["job_id"] != http["job_id"]:
                    problems.append(f"job attempt #{a['attempt']} by {a['worker_id']} paired with delivery attempt "
                                    f"{http['attempt']} by {http['worker_id']}\n" + an.describe_delivery(delivery_id))
                by_attempt_row[a["id"]] = http

        def timed_out(a, by_attempt_row=by_attempt_row):
            http = by_attempt_row.get(a["id"])
            return http is not None and http["error_class"] == "timeout"

        sent = collections.defaultdict(list)
        for r in receipts:
            candidates = [a for a in rows if a["started"] <= r["t"] + TOLERANCE]
            if not candidates:
                problems.append(f"request at {stamp(r['t'])} before any attempt was claimed\n"
                                + an.describe_delivery(delivery_id))
                continue
            attempt = candidates[-1]
            if r["t"] > attempt["finished"] + TOLERANCE and attempt["outcome"] != "lost":
                # A request the worker gave up on (timeout) may still reach the receiver a
                # moment later, when it was stuck in the receiver's accept queue.
                if timed_out(attempt) and r["t"] <= attempt["finished"] + 2.0:
                    an.late_arrivals += 1
                else:
                    problems.append(f"request at {stamp(r['t'])} after its attempt #{attempt['attempt']} ended\n"
                                    + an.describe_delivery(delivery_id))
                    continue
            sent[attempt["id"]].append(r)
            an.receipt_attempt[id(r)] = attempt
        for a in rows:
            got = sent.get(a["id"], [])
            if len(got) > 1:
                problems.append(f"{len(got)} requests within one attempt (#{a['attempt']}, {a['worker_id']})\n"
                                + an.describe_delivery(delivery_id))
            if a["outcome"] in ("succeeded", "failed"):
                http = by_attempt_row.get(a["id"])
                if http is None and got and by_attempt_row:
                    problems.append(f"a request arrived in attempt #{a['attempt']} by {a['worker_id']}, which "
                                    f"recorded none\n" + an.describe_delivery(delivery_id))
                if http is not None and not got and http["error_class"] in ("timeout", "connect_failed"):
                    an.never_arrived += 1  # it never got through before the worker gave up
                elif http is not None and not got:
                    problems.append(f"attempt #{a['attempt']} by {a['worker_id']} recorded "
                                    f"({http['http_status']} {http['error_class']}) but never received\n"
                                    + an.describe_delivery(delivery_id))
                if got and http is not None:
                    r = got[0]
                    answered = r["status"] if isinstance(r["status"], int) and not r["late"] else None
                    if r["status"] == "reset" and http["http_status"] is not None:
                        problems.append(f"receiver reset the connection, worker recorded {http['http_status']}\n"
                                        + an.describe_delivery(delivery_id))
                    if answered is not None and http["http_status"] != answered:
                        if http["http_status"] is None and http["error_class"] == "timeout":
                            an.timeout_races += 1
                        else:
                            problems.append(f"receiver answered {answered}, worker recorded "
                                            f"{http['http_status']} {http['error_class']}\n"
                                            + an.describe_delivery(delivery_id))
            elif a["outcome"] in ("lost", "released") and got:
                later = [r for r in receipts if r["t"] > got[0]["t"]]
                if not later:
                    continue  # its job gave up (lost on the last attempt): not sent twice
                an.duplicates += 1
                an.resent[delivery_id] += 1
                an.resent_at[delivery_id].append(got[0]["t"])
                cause = an.fault_cause(a, got[0]["t"])
                if cause is None:
                    an.unexplained_duplicates += 1
                    dup_problems.append("\n".join(
                        [f"request at {stamp(got[0]['t'])} in {a['outcome']} attempt #{a['attempt']} of "
                         f"{a['worker_id']} sent again with no kill, stop or database fault to explain it",
                         an.describe_delivery(delivery_id)]
                        + an.replica_warnings(a["worker_id"], a["started"] - 1, a["finished"] + 1)))
                else:
                    an.causes[cause] += 1
        accepted = [r for r in receipts if r["status"] == 200 and not r["late"]]
        if len(accepted) > 1:
            an.accepted_twice += 1
            an.resent[delivery_id] = max(an.resent[delivery_id], len(accepted) - 1)
            # Every 2xx but the last must be one whose outcome was dropped (lost, released;
            # their causes are checked above) or one the worker timed out on just before.
            attempt_of = {id(r): a for a in rows for r in sent.get(a["id"], [])}
            for r in accepted[:-1]:
                a = attempt_of.get(id(r))
                http = by_attempt_row.get(a["id"]) if a else None
                if a is None or not (a["outcome"] in ("lost", "released")
                                     or (http is not None and http["error_class"] == "timeout")):
                    dup_problems.append(f"answered 2xx at {stamp(r['t'])} and again later, though that attempt "
                                        f"was recorded ({a['outcome'] if a else 'no attempt'})\n"
                                        + an.describe_delivery(delivery_id))
    an.check("every request belongs to exactly one attempt", problems)
    an.check("every duplicate is explained by a kill -9, a graceful stop (released) or a database fault",
               dup_problems)
