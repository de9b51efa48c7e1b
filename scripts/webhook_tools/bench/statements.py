"""pg_stat_statements: database time per unit of work."""

import sys

from ..core import RunError
from .db import psql
from .figures import build_profile, profile_lines
from .settings import STATEMENTS_TOP, TAG


def reset(bench):
    if bench.statements_error is None:
        try:
            psql(bench.url, "SELECT pg_stat_statements_reset()")
        except RunError as error:
            bench.statements_error = str(error).splitlines()[0]


def profile(bench, phase, units, unit, top=STATEMENTS_TOP):
    """Execution time of the statements run in the bench database since statements_reset(),
    the bench's own (TAG) left out: the sum over top-level statements per `unit` (a function's
    nested statements are inside its call's time, so they are not added again), and the `top`
    statements by total time, nested ones included and marked. Logged to stderr."""
    if bench.statements_error is not None:
        return {"error": f"pg_stat_statements unavailable: {bench.statements_error}"}
    if not units:
        return {"error": f"no {unit} to divide by"}
    try:
        rows = psql(bench.url, f"""
        SELECT toplevel, calls, total_exec_time, rows,
               replace(left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 80), '|', '/')
        FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND query NOT LIKE '%{TAG}%'
        ORDER BY total_exec_time DESC""")
    except RunError as error:
        return {"error": str(error).splitlines()[0]}
    profile = build_profile([(t == "t", int(c), float(ms), int(n), text) for t, c, ms, n, text in rows],
                            units, unit, top)
    print("\n".join(profile_lines(profile, phase, units, unit, top)), file=sys.stderr, flush=True)
    return profile
