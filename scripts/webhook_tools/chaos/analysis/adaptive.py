"""The adaptive limit under a slowdown: the degrading endpoint's limit, sampled in the database
while its answers went from 5 ms to 2 s and back (issue 22)."""

from ..settings import DEGRADE_CUT_LIMIT, DEGRADE_MIN_RUN, DEGRADE_RAISE_LIMIT, ENDPOINT_CONCURRENCY, stamp

FLOOR = 1


def follow(trace, start, end):
    """From a limit trace [(time, limit)], one entry per change: the limit in force just before
    `start` (ENDPOINT_CONCURRENCY, where every endpoint starts, when none was recorded yet); when
    it was first at the floor from `start` on; and when, from `end` on, it was first back at least
    at the limit from before. None for a moment that never came."""
    before = ENDPOINT_CONCURRENCY
    at_end = None
    for t, limit in trace:
        if t < start:
            before = limit
        if t <= end:
            at_end = limit
    at_end = before if at_end is None else at_end
    floor_at = start if before <= FLOOR else next((t for t, limit in trace if t >= start and limit <= FLOOR), None)
    if at_end >= before:
        raised_at = end
    else:
        raised_at = next((t for t, limit in trace if t > end and limit >= before), None)
    return before, floor_at, raised_at


def check_adaptive_limit(an):
    """In a run long enough (DEGRADE_MIN_RUN), the degrading endpoint's limit was at the floor
    within DEGRADE_CUT_LIMIT of its slowdown, and back at its limit from before within
    DEGRADE_RAISE_LIMIT of its recovery. Leaves `an.degrade` for the figures."""
    c = an.c
    window = getattr(getattr(c, "receiver", None), "degraded_window", None)
    client = c.client_of.get("degrade")
    an.degrade = None
    problems = []
    if client is None or window is None:
        an.check("the adaptive limit follows a slowdown", problems)  # a run without the endpoint
        return
    trace = list((c.sampler.limits if c.sampler else {}).get("client:" + client, []))
    start, end = window
    before, floor_at, raised_at = follow(trace, start, end)
    an.degrade = {"start": start, "end": end, "trace": trace, "before": before, "floor_at": floor_at,
                  "raised_at": raised_at, "checked": c.seconds >= DEGRADE_MIN_RUN}
    if an.degrade["checked"]:
        if floor_at is None or floor_at - start > DEGRADE_CUT_LIMIT:
            problems.append(f"the degrading endpoint's limit was not at {FLOOR} within {DEGRADE_CUT_LIMIT:.0f}s "
                            f"of its slowdown at {stamp(start)}: {describe(trace)}")
        if raised_at is None or raised_at - end > DEGRADE_RAISE_LIMIT:
            problems.append(f"the degrading endpoint's limit was not back at {before} within "
                            f"{DEGRADE_RAISE_LIMIT:.0f}s of its recovery at {stamp(end)}: {describe(trace)}")
    an.check("the adaptive limit follows a slowdown", problems)


def describe(trace):
    """A limit trace as the report prints it: `4 at 12.30s, 2 at 15.10s, ...`."""
    return ", ".join(f"{limit} at {stamp(t).strip()}" for t, limit in trace) or "never sampled"


def figure(an):
    """The figure line: the trace, and how long the cut and the raise took."""
    d = an.degrade
    if d is None:
        return None
    if not d["checked"]:
        suffix = f"not checked: the run is shorter than {DEGRADE_MIN_RUN}s"
    else:
        cut = f"{d['floor_at'] - d['start']:.1f}s" if d["floor_at"] is not None else "never"
        raised = f"{d['raised_at'] - d['end']:.1f}s" if d["raised_at"] is not None else "never"
        suffix = (f"at {FLOOR} {cut} after the slowdown (limit {DEGRADE_CUT_LIMIT:.0f}s), back at {d['before']} "
                  f"{raised} after the recovery (limit {DEGRADE_RAISE_LIMIT:.0f}s)")
    return (f"slow from {stamp(d['start']).strip()} to {stamp(d['end']).strip()}; limit {describe(d['trace'])}; "
            + suffix)
