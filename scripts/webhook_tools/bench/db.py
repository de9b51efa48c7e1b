"""The bench's statements: psql with the bench's tag, and the web app's events."""

import threading
import time

from ..core import RunError
from ..postgres import PsqlSession, psql_lines
from .settings import TAG

# PostgreSQL helpers


def psql(url, sql, timeout=120):
    """Runs SQL (one statement, or several) and returns its rows as lists of strings. The first
    statement carries TAG; a script that runs while pg_stat_statements counts tags each."""
    tagged = sql if sql.lstrip().startswith(TAG) else f"{TAG} {sql.lstrip()}"
    return [line.split("|") for line in psql_lines(url, tagged, timeout)]


def psql_value(url, sql, timeout=120):
    rows = psql(url, sql, timeout)
    return rows[0][0] if rows and rows[0] else None



def events_sql(first, count, accounts):
    """One statement inserting `count` integration.connected jobs (numbered from `first`, spread
    over the bench accounts, each connected by its own user); returns each job's id and created_at
    (Unix seconds)."""
    return f"""
        WITH ins AS (
            INSERT INTO webhook_worker.jobs (kind, payload)
            SELECT 'integration.connected',
                   jsonb_build_object('integration_account_id', 'bench-acct-' || (1 + g % {accounts}),
                                      'user_id', 'bench-user-' || (1 + g % {accounts}))
            FROM generate_series({first}, {first + count - 1}) g
            RETURNING id, created_at)
        SELECT id, extract(epoch FROM created_at) FROM ins"""


class EventLoad:
    """A thread inserting integration.connected events at `rate` per second from a psql session
    of its own, in one statement every TICK seconds (what is due by then)."""

    TICK = 0.02

    def __init__(self, url, rate, accounts):
        self.session = PsqlSession(url, prefix=TAG + " ")
        self.rate, self.accounts = rate, accounts
        self.sent, self.error = 0, None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.started = time.monotonic()
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            due = int((time.monotonic() - self.started) * self.rate) - self.sent
            if due > 0:
                try:
                    self.session.query(events_sql(self.sent, due, self.accounts))
                except RunError as error:
                    self.error = str(error)
                    return
                self.sent += due
            self.stop.wait(self.TICK)

    def finish(self):
        if not self.stop.is_set():
            self.stop.set()
            if self.thread.is_alive():
                self.thread.join(timeout=30)
            self.session.close()
