"""What every tool shares: the checkout's root, errors, progress lines, settings from the
environment and percentiles. Python's standard library only."""

import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# How error messages name the script: scripts/chaos or scripts/bench.
PROGRAM = "scripts/" + os.path.basename(sys.argv[0])


class RunError(Exception):
    """The run, or one of its phases, could not complete; the message says why."""


def log(message):
    """A progress line on standard error."""
    print(f"==> {message}", file=sys.stderr, flush=True)


def setup_process():
    """Runs from the checkout's root, and turns SIGTERM and SIGHUP into SystemExit(128 + signal),
    so that the scripts' finally blocks stop what they started."""
    os.chdir(ROOT)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


# ---------------------------------------------------------------------------------------------
# Settings


def settings_error(message):
    """Bad settings: one line naming the script, exit status 2."""
    print(f"{PROGRAM}: {message}", file=sys.stderr)
    sys.exit(2)


def env_int(name, default, minimum=1):
    """An integer setting: `default` when unset or blank, else an integer >= `minimum`."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        settings_error(f"invalid {name} '{text}': expected an integer >= {minimum}")
    return value


def env_flag(name):
    """An on/off setting: on unless unset, empty or 0."""
    return os.environ.get(name, "") not in ("", "0")


def worker_binary():
    """WEBHOOK_WORKER_BIN (default .build/release/webhook-worker, relative to the checkout), as an
    absolute path; exits 2 when it is not executable."""
    binary = os.environ.get("WEBHOOK_WORKER_BIN", "").strip() or ".build/release/webhook-worker"
    binary = os.path.abspath(os.path.join(ROOT, binary))
    if not os.access(binary, os.X_OK):
        settings_error(f"no executable at {binary} (swift build -c release, or set WEBHOOK_WORKER_BIN)")
    return binary


# ---------------------------------------------------------------------------------------------
# Statistics


def percentile(values, p):
    """The p-th percentile, interpolated linearly between closest ranks (numpy's default); None
    for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


