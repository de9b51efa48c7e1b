"""The chaos run's checks and figures, from the rows the run left in its database, the receiver's
receipts and the run's fault log. `analyse(run)` reads them, runs CHECKS in order (each records
its name and problems with `an.check`; a check passes when it has none), computes the figures and
prints the report; its exit status is 0 when every check passed.

A check is a function of the Analysis (records.py) that calls `an.check(name, problems)`; later
checks and the figures may read what earlier ones left on it (matching's duplicates, isolation's
peaks). scripts/tests run each on recorded inputs that should pass and inputs that should fail."""

from . import adaptive, isolation, matching, outcomes, phase_checks
from .figures import figures
from .records import Analysis, read_rows
from .report import report


def check_replicas(an):
    """Graceful stops exit 0 and no replica exits on its own (what the run noticed as it went)."""
    an.check("graceful stops exit 0", an.c.problems.get("graceful stops exit 0", []))
    an.check("no replica exits on its own", an.c.problems.get("no replica exits on its own", []))


# In the order the report lists them.
CHECKS = (
    outcomes.check_inserts,                 # 1. every acknowledged insert is one event job
    outcomes.check_jobs_ended,              # 2. every job ended exactly once, within its attempts
    outcomes.check_queue_empty,             # 3. nothing left in the queue
    outcomes.check_fanout,                  # 4. exactly the expected recipients
    outcomes.check_deliveries_ended,        # 5. delivered, failed (dead letter) or cancelled
    outcomes.check_endpoints,               # 6. what each endpoint should come to
    outcomes.check_receipts,                # 7. bytes, signatures, URL; delivered means accepted
    matching.match_receipts,                # 8. one attempt per request; duplicates explained
    check_replicas,                         # 9. graceful stops, no exits on their own
    phase_checks.check_table_lock,          # 10. the lock phase
    phase_checks.check_sigterm_pg_down,     # 11. SIGTERM while PostgreSQL is down
    phase_checks.check_connect_window,      # 12. the connect window
    isolation.check_isolation,              # 13-14. endpoint concurrency, the hanging circuit
    adaptive.check_adaptive_limit,          # 15. the degrading endpoint's limit, cut and raised
)


def run_checks(an):
    for check in CHECKS:
        check(an)


def analyse(run):
    """Reads the run's rows, checks, computes the figures and prints the report; the exit status."""
    an = Analysis(run, read_rows(run))
    run_checks(an)
    figures(an)
    return report(an)
