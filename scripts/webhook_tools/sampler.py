"""Deliveries in flight per endpoint, sampled from the queue."""

import collections
import json
import threading
import time

from .core import RunError
from .postgres import PsqlSession


class EndpointSampler:
    """Every INTERVAL seconds, on a psql session of its own (reopened after an outage): the
    running jobs per concurrency_key (for webhook.deliver, the endpoint: 'client:<id>'), each
    endpoint's circuit state (webhook_worker.endpoints) and adaptive limit in force
    (webhook_worker.endpoint_concurrency.applied). Keeps each key's peak (`peak`, when first
    reached in `peak_at`), how often each circuit was seen opening (`opened`), and each
    endpoint's limit as it changed (`limits`: key -> [(time, limit)])."""

    INTERVAL = 0.05
    QUERY = """
        SELECT json_build_object(
            'running', coalesce((SELECT json_object_agg(k, n) FROM (
                SELECT concurrency_key AS k, count(*) AS n FROM webhook_worker.jobs
                WHERE state = 'running' AND concurrency_key IS NOT NULL GROUP BY 1) x), '{}'::json),
            'circuits', coalesce((SELECT json_object_agg(key, state) FROM webhook_worker.endpoints), '{}'::json),
            'limits', coalesce((SELECT json_object_agg(key, applied) FROM webhook_worker.endpoint_concurrency
                                WHERE applied IS NOT NULL), '{}'::json))"""

    def __init__(self, url):
        self.url = url
        self.stop = threading.Event()
        self.samples = 0
        self.failures = 0                       # queries that failed (PostgreSQL restarting)
        self.longest_gap = 0.0
        self.peak = collections.Counter()       # key -> most running at once
        self.peak_at = {}                       # key -> when first seen
        self.opened = collections.Counter()     # key -> times seen going from another state to open
        self.limits = collections.defaultdict(list)  # key -> [(time, limit)], one entry per change
        self.finished = None
        self._last_state = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        session = None
        last = time.time()
        while not self.stop.is_set():
            began = time.time()
            try:
                if session is None:
                    session = PsqlSession(self.url, timeout=5)
                rows = session.query(self.QUERY)
                sample = json.loads("|".join(rows[0]))
            except (RunError, ValueError, IndexError):
                self.failures += 1
                if session is not None:
                    session.close()
                    session = None
                self.stop.wait(0.2)
                continue
            now = time.time()
            self.longest_gap = max(self.longest_gap, now - last)
            last = now
            self.samples += 1
            for key, n in sample["running"].items():
                if n > self.peak[key]:
                    self.peak[key] = n
                    self.peak_at[key] = now
            for key, limit in sample.get("limits", {}).items():
                if not self.limits[key] or self.limits[key][-1][1] != limit:
                    self.limits[key].append((now, limit))
            for key, state in sample["circuits"].items():
                if state == "open" and self._last_state.get(key) != "open":
                    self.opened[key] += 1
                self._last_state[key] = state
            self.stop.wait(max(0.0, self.INTERVAL - (time.time() - began)))
        if session is not None:
            session.close()

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=15)
        self.finished = time.time()
