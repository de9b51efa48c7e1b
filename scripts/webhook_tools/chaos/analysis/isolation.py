"""Endpoint isolation: deliveries in flight per endpoint, and the hanging endpoint's circuit."""

import time

from ...sampler import EndpointSampler
from ..settings import ENDPOINT_CONCURRENCY, stamp


def receiver_in_flight(an, endpoint, end):
    """Requests to `endpoint` open at once at the receiver (from arrival until the sender
    closed the connection): the peak, and the moments above the endpoint limit that no
    dropped attempt explains (a request whose attempt was lost or released may still be open
    when its job runs again elsewhere)."""
    marks = []
    for r in an.all_receipts:
        if r["endpoint"] == endpoint:
            marks.append((r["t"], 1, r))
            marks.append((r.get("closed") or end, 0, r))
    marks.sort(key=lambda m: (m[0], m[1]))
    open_now, peak, unexplained = set(), 0, []
    by_id = {}
    for t, kind, r in marks:
        if kind == 0:
            open_now.discard(id(r))
            continue
        open_now.add(id(r))
        by_id[id(r)] = r
        peak = max(peak, len(open_now))
        if len(open_now) > ENDPOINT_CONCURRENCY:
            dropped = [i for i in open_now
                       if (an.receipt_attempt.get(i) or {}).get("outcome") in ("lost", "released")]
            if not dropped:
                unexplained.append(
                    f"{len(open_now)} requests open at once at {stamp(t)}:\n" + "\n".join(
                        f"    {stamp(by_id[i]['t'])} -> {stamp(by_id[i].get('closed') or end)} delivery "
                        f"{by_id[i]['delivery']} attempt "
                        f"{(an.receipt_attempt.get(i) or {}).get('attempt')} by "
                        f"{(an.receipt_attempt.get(i) or {}).get('worker_id')} "
                        f"({(an.receipt_attempt.get(i) or {}).get('outcome')})" for i in sorted(open_now)))
    return peak, unexplained


def check_isolation(an):
    """Endpoint isolation: no endpoint ever had more than ENDPOINT_CONCURRENCY deliveries
    running across the replicas (sampled in the database; for the hanging endpoint also
    counted as open requests at the receiver); the hanging endpoint's circuit opened and never
    closed (it never answered)."""
    c = an.c
    sampler = c.sampler
    hang_key = "client:" + c.client_of["hang"]
    end = sampler.finished if sampler and getattr(sampler, "finished", None) else time.time()
    problems = []
    if sampler is None or sampler.samples == 0:
        problems.append("the running deliveries were never sampled")
    else:
        for key, n in sorted(sampler.peak.items()):
            if n > ENDPOINT_CONCURRENCY:
                problems.append(f"{key}: {n} deliveries running at once (sampled at {stamp(sampler.peak_at[key])}), "
                                f"more than {ENDPOINT_CONCURRENCY}")
    an.hang_receiver_peak, unexplained = receiver_in_flight(an, "hang", end)
    problems += unexplained
    an.hang_db_peak = sampler.peak.get(hang_key, 0) if sampler else 0
    others = ", ".join(f"{k.split(':', 1)[1].replace('client-', '')} {n}"
                       for k, n in sorted(sampler.peak.items()) if k != hang_key) if sampler else "-"
    an.check(f"at most {ENDPOINT_CONCURRENCY} deliveries in flight per endpoint across the replicas: hanging "
               f"endpoint peak {an.hang_db_peak} running ({sampler.samples if sampler else 0} samples every "
               f"{EndpointSampler.INTERVAL * 1000:.0f} ms), {an.hang_receiver_peak} requests open at once at the "
               f"receiver; others: {others}", problems)

    problems = []
    row = an.endpoint_rows.get(hang_key)
    requests = sum(1 for r in an.all_receipts if r["endpoint"] == "hang")
    opened = sampler.opened.get(hang_key, 0) if sampler else 0
    if row is None:
        problems.append(f"no webhook_worker.endpoints row for {hang_key}: its failures were never recorded")
        name = "hanging endpoint's circuit opened: no endpoints row"
    else:
        if row["trips"] < 1 and opened == 0:
            problems.append(f"{hang_key}: the circuit never opened ({row['failures']} failures recorded, "
                            f"state {row['state']})")
        if row["recoveries"] or row["ever_succeeded"] or row["state"] == "closed":
            problems.append(f"{hang_key}: state {row['state']}, {row['recoveries']} recoveries, "
                            f"succeeded {row['ever_succeeded']}, though it never answered")
        name = (f"hanging endpoint's circuit opened: {row['trips']} trips (seen opening {opened} times), "
                f"now {row['state']}, {row['failures']} failures recorded, {requests} requests received, "
                f"{(c.operator or {}).get('held', {}).get(c.client_of['hang'], {}).get('n', 0)} deliveries "
                f"held at the end")
    an.check(name, problems)
