"""The web app's inserts of integration.connected events, retried through outages."""

import random
import time

from ..core import RunError, log
from ..postgres import PsqlSession
from .settings import stamp


def insert_statement(seq, account, user):
    """The web app's insert of event `seq`, recorded in chaos_events by the same statement;
    safe to retry (a second run of the same seq inserts nothing). Returns the job id."""
    return f"""
        WITH j AS (
            INSERT INTO webhook_worker.jobs (kind, payload)
            SELECT 'integration.connected',
                   jsonb_build_object('integration_account_id', '{account}'::text, 'user_id', '{user}'::text)
            WHERE NOT EXISTS (SELECT 1 FROM chaos_events WHERE seq = {seq})
            RETURNING id, created_at
        )
        INSERT INTO chaos_events (seq, job_id, account_id, user_id, created_at)
        SELECT {seq}, id, '{account}', '{user}', created_at FROM j;
        SELECT job_id FROM chaos_events WHERE seq = {seq}"""


def insert_loop(chaos):
    rng = random.Random(chaos.seed + 1)
    session = None
    seq = chaos.seq_base  # the lock phase's events come first
    outage_started = None
    try:
        while not chaos.stop_inserting.is_set():
            seq += 1
            account, user = rng.choice(chaos.accounts)
            statement = insert_statement(seq, account, user)
            backoff = 0.05
            deadline = time.monotonic() + 90
            while True:
                try:
                    if session is None:
                        session = PsqlSession(chaos.url)
                    rows = session.query(statement, timeout=10)
                    if not rows:
                        raise RunError("the insert's row is missing")
                    chaos.inserted.append((seq, int(rows[0][0])))
                    if outage_started is not None:
                        chaos.insert_outage += time.time() - outage_started
                        outage_started = None
                    break
                except RunError as error:
                    chaos.insert_failures += 1
                    if outage_started is None:
                        outage_started = time.time()
                        log(f"{stamp()} insert failed, retrying: {str(error)[:160]}")
                    if session is not None:
                        session.close()
                        session = None
                    if time.monotonic() > deadline:
                        raise RunError(f"insert {seq} kept failing for 90s: {error}")
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
            chaos.stop_inserting.wait(rng.uniform(0.05, 0.10))
    except Exception as error:  # reported by the main thread
        chaos.inserter_error = error
    finally:
        if session is not None:
            session.close()
