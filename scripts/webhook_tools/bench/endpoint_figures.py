"""Figures of the per-endpoint phases, from what their receivers recorded."""


def rate_in_window(times, start, end):
    """Events per second among `times` (Unix seconds) within [start, end]; None for an empty window."""
    if end <= start:
        return None
    return round(sum(1 for t in times if start <= t <= end) / (end - start), 1)


def inside_window(requests, opened, seconds):
    """Requests ((arrived, answered, delivery id, status) each) that arrived after `opened` and
    before `opened + seconds`: what an endpoint that asked for that pause should not have got."""
    return sum(1 for arrived, _, _, _ in requests if opened < arrived < opened + seconds)


def arrivals_after(requests, opened, seconds):
    """How long after `opened` (ms, rounded to 0.1) each request inside the window arrived: a
    request a moment after the answer was on its way before the sender could have read it."""
    return sorted(round((arrived - opened) * 1000, 1) for arrived, _, _, _ in requests
                  if opened < arrived < opened + seconds)


def sent_inside_window(requests, opened, seconds, first, excuse_s):
    """Of the requests inside the window, those the sender sent after it could have read the
    answer that opened it. Excused: the first `first` requests to arrive (sent together, before any
    answer came back) that arrived within `excuse_s` of `opened`. A request sent after the answer
    was read comes after an outcome's commit and a claim, later than that; one of the first that
    arrives later still is counted, since it may have been sent late."""
    return sum(1 for index, (arrived, _, _, _) in enumerate(requests)
               if opened < arrived < opened + seconds
               and not (index < first and arrived - opened <= excuse_s))
