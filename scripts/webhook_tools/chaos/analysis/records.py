"""What the analysis reads: the run's rows (read from the chaos database once the replicas have
stopped), the receiver's receipts and the run's fault log, indexed; and the helpers every check
uses. `Analysis(run, rows)` takes the rows as plain lists of dicts, so that the tests can give it
recorded ones (scripts/tests/chaos_fixtures.py)."""

import collections
import datetime
import os

from ...postgres import psql_json
from ...processes import log_lines
from ..logs import one_line, parse_log_line
from ..settings import LEASE, TOLERANCE, stamp

# The rows the analysis reads, by name; each a list of dicts (`expected`: event job id and client).
QUERIES = {
    "events": """
        SELECT seq, job_id, user_id, account_id, extract(epoch FROM created_at)::float8 AS created
        FROM chaos_events ORDER BY seq""",
    "jobs": """
        SELECT job_id, kind, payload, extract(epoch FROM created_at)::float8 AS created FROM chaos_jobs""",
    "expected": """
        SELECT e.job_id, c.id AS client
        FROM chaos_events e
        JOIN "OAuthClient" c ON c."isActive"
            AND coalesce(btrim(c."webhookUrl"), '') <> ''
            AND 'integration' IN (SELECT btrim(s) FROM unnest(string_to_array(c."allowedScopes", ',')) s)
            AND EXISTS (SELECT 1 FROM "OAuthIntegrationGrant" g
                        WHERE g."clientId" = c.id AND g."userId" = e.user_id
                          AND g."isActive" AND g."revokedAt" IS NULL)""",
    "attempts": """
        SELECT id, job_id, kind, attempt, worker_id, outcome, error,
               extract(epoch FROM started_at)::float8 AS started,
               extract(epoch FROM finished_at)::float8 AS finished
        FROM webhook_worker.job_attempts ORDER BY started_at, id""",
    "dead_letters": """
        SELECT id, job_id, kind, payload, reason, last_error, attempts, max_attempts
        FROM webhook_worker.dead_letter_jobs ORDER BY id""",
    "deliveries": """
        SELECT delivery_id::text, source_job_id, oauth_client_id, user_id, status, attempts, last_http_status,
               last_error, payload, extract(epoch FROM created_at)::float8 AS created,
               extract(epoch FROM delivered_at)::float8 AS delivered
        FROM webhook_worker.webhook_deliveries""",
    "delivery_attempts": """
        SELECT delivery_id::text, attempt, job_id, worker_id, http_status, error_class, error, duration_ms,
               extract(epoch FROM attempted_at)::float8 AS attempted
        FROM webhook_worker.delivery_attempts ORDER BY delivery_id, attempt""",
    "endpoints": """
        SELECT key, state, consecutive_failures, trips, failures, recoveries,
               last_success_at IS NOT NULL AS ever_succeeded, disabled_by
        FROM webhook_worker.endpoints""",
}


def read_rows(run):
    """The rows of QUERIES from the chaos database, and the receiver's receipts."""
    rows = {name: psql_json(run.url, sql) for name, sql in QUERIES.items()}
    rows["receipts"] = run.receiver.snapshot()
    return rows


class Analysis:
    """The rows indexed for the checks (`run` is the chaos run: its settings, clients and fault
    log), with what the checks found: `violations` (check name -> problems, in order), `notes` and
    `figures`."""

    def __init__(self, run, rows):
        self.c = run
        self.violations = collections.OrderedDict()
        self.notes = []
        self.figures = collections.OrderedDict()
        self._replica_logs = {}
        self.events = rows["events"]
        self.event_jobs = {e["job_id"]: e for e in self.events}
        self.jobs = {r["job_id"]: r for r in rows["jobs"]}
        self.expected = collections.defaultdict(set)
        for r in rows["expected"]:
            self.expected[r["job_id"]].add(r["client"])
        self.all_attempts = rows["attempts"]
        self.attempts = collections.defaultdict(list)
        for r in self.all_attempts:
            self.attempts[r["job_id"]].append(r)
        self.dead_rows = rows["dead_letters"]
        self.dead = collections.defaultdict(list)
        for r in self.dead_rows:
            self.dead[r["job_id"]].append(r)
        self.deliveries = {r["delivery_id"]: r for r in rows["deliveries"]}
        self.delivery_attempts = collections.defaultdict(list)
        for r in rows["delivery_attempts"]:
            self.delivery_attempts[r["delivery_id"]].append(r)
        self.endpoint_rows = {r["key"]: r for r in rows["endpoints"]}
        self.all_receipts = rows["receipts"]
        self.receipts = collections.defaultdict(list)
        for r in sorted(self.all_receipts, key=lambda r: r["t"]):
            self.receipts[r["delivery"]].append(r)
        self.deliver_job = {}
        self.job_delivery = {}
        for job in self.jobs.values():
            if job["kind"] == "webhook.deliver":
                delivery = (job["payload"] or {}).get("delivery_id")
                self.job_delivery[job["job_id"]] = delivery
                self.deliver_job.setdefault(delivery, []).append(job["job_id"])

    def check(self, name, problems):
        """Records a check: it passes when `problems` is empty."""
        self.violations[name] = list(problems)

    # -- helpers -----------------------------------------------------------------------------

    def describe_delivery(self, delivery_id):
        d = self.deliveries.get(delivery_id, {})
        parts = [f"delivery {delivery_id} client {d.get('oauth_client_id')} status {d.get('status')} "
                 f"attempts {d.get('attempts')} source job {d.get('source_job_id')}"]
        for job_id in self.deliver_job.get(delivery_id, []):
            parts.append(f"  job {job_id}:")
            for a in self.attempts.get(job_id, []):
                parts.append(f"    job_attempt #{a['attempt']} {a['outcome']:<9} by {a['worker_id']} "
                             f"{stamp(a['started'])} -> {stamp(a['finished'])} {one_line(a['error'], 140)}")
            for dl in self.dead.get(job_id, []):
                parts.append(f"    dead letter {dl['id']} {dl['reason']}: {one_line(dl['last_error'])}")
        for a in self.delivery_attempts.get(delivery_id, []):
            parts.append(f"    delivery_attempt {a['attempt']} job {a['job_id']} by {a['worker_id']} "
                         f"http {a['http_status']} {a['error_class'] or ''} {a['duration_ms']}ms "
                         f"recorded {stamp(a['attempted'])}")
        for r in self.receipts.get(delivery_id, []):
            late = " (late)" if r["late"] else ""
            parts.append(f"    receipt {stamp(r['t'])} {r['path']} answered {r['status']}{late}")
        return "\n".join(parts)

    def counted_attempts(self, d):
        """Attempts the delivery's job spent (releases and an operator's cancel excepted)."""
        return sum(1 for j in self.deliver_job.get(d["delivery_id"], []) for a in self.attempts.get(j, [])
                   if a["outcome"] != "released" and a["worker_id"] != "operator")

    def operator_cancelled(self, d):
        """Cancelled by the operator's `deliveries cancel --client` at the end of the drain."""
        op = self.c.operator
        return (d["status"] == "cancelled" and op is not None and op["cancelled"] is not None
                and d["oauth_client_id"] == self.c.client_of["hang"]
                and d["last_error"] == "cancelled by an operator")

    def replica_log(self, worker_id):
        """(epoch seconds, message, error) of a replica's JSON log lines."""
        if worker_id not in self._replica_logs:
            entries = []
            for line in log_lines(os.path.join(self.c.logdir, f"{worker_id}.log")):
                entry = parse_log_line(line)
                if not entry or "timestamp" not in entry:
                    continue
                try:
                    t = datetime.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
                except ValueError:
                    continue
                entries.append((t, entry.get("message", ""), entry))
            self._replica_logs[worker_id] = entries
        return self._replica_logs[worker_id]

    def replica_warnings(self, worker_id, start, end, limit=6):
        """What the replica said about its leases, its database and its outcomes in a window."""
        keep = ("lease", "renew", "could not", "outcome", "LISTEN", "threw", "shutdown")
        out = []
        for t, message, entry in self.replica_log(worker_id):
            if start <= t <= end and any(k in message for k in keep) and message != "webhook attempt failed":
                detail = one_line(entry.get("error") or entry.get("job.ids") or entry.get("jobs") or "", 200)
                out.append(f"    {worker_id} log {stamp(t)}: {message}: {detail}")
        return out[:limit]

    def fault_cause(self, attempt, receipt_time):
        """Why an attempt's outcome was dropped; None if no injected fault explains it.

        'released' (cut off at shutdown): a graceful stop of its replica while it ran.
        'lost' (its lease expired): a kill -9 of its replica after the request, or a database
        fault while it ran that kept the replica from renewing the lease or writing the outcome: the
        PostgreSQL restart, or a termination of the replicas' pool connections (terminating only
        the LISTEN connections explains nothing: they hold no lease). A graceful stop does not
        explain a lost attempt: a stopping replica finishes or releases its jobs."""
        worker, s, f = attempt["worker_id"], attempt["started"], attempt["finished"]
        if attempt["outcome"] == "released":
            for g in self.c.graceful:
                if g["worker_id"] == worker and s - 1 <= g["t"] <= f + TOLERANCE:
                    return "graceful stop"
            return None
        for k in self.c.kills:
            if k["worker_id"] == worker and s - TOLERANCE <= k["t"] <= f + TOLERANCE \
                    and (receipt_time is None or receipt_time <= k["t"] + TOLERANCE):
                return "kill -9"
        for p in self.c.pg_restarts:
            if p["t0"] - 1 <= f and s <= p["t1"] + LEASE + 1:
                return "PostgreSQL restart"
        for t in self.c.terminations:
            if t["mode"] != "listen" and t["backends"] > 0 and s - 1 <= t["t"] <= f + TOLERANCE:
                return "pool connections terminated"
        return None

