"""Reading the replicas' logs: JSON lines, libpq's notices, crash reports."""

import json

CRASH_MARKERS = ("Fatal error", "fatal error", "Crash", "crash", "stack trace", "Stack trace", "Segmentation",
                 "Illegal instruction", "Trace/breakpoint", "webhook-worker:")


# A crashing Swift process's own report (the backtracer's) in a replica's log.
CRASH_REPORT_MARKERS = ("*** Program crashed", "*** Signal ", "Fatal error")


def parse_log_line(line):
    """A log line as a dict, or None when it is not the logger's JSON (libpq's notices go to
    standard error on their own, e.g. 'FATAL:  terminating connection due to administrator
    command' when a backend is terminated)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def is_error_line(line):
    entry = parse_log_line(line)
    if entry is None:
        return any(marker in line for marker in CRASH_MARKERS)
    return entry.get("level") in ("error", "critical")


def one_line(text, limit=160):
    return " ".join(str(text or "").split())[:limit]
