"""The benchmark's constants: database names, the tag on its own statements, the phases' names
and the isolation phase's targets."""

BENCH_DB = "webhook_worker_bench"
PGBENCH_DB = "bench_pgbench"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# Leads every statement the bench itself sends, so that pg_stat_statements' profile of a phase
# can leave out the bench's polling and inserts and keep the worker's statements.
TAG = "/* webhook-worker-bench */"

PHASES = ("burndown", "latency", "delivery", "delivery-2-clients", "pgbouncer", "latency-under-load", "isolation",
          "one-endpoint", "slow-endpoint", "fairness", "retry-after",
          "backlog", "history", "history-load", "pgbench")  # BENCH_SKIP's names, in the order they run
HTTP_ARGS = ["--allow-http", "--allow-private-networks"]  # the receivers are on 127.0.0.1, over http
PICKUP_DEFINITION = ("job_attempts.started_at (the claim, just before the handler starts) - jobs.created_at "
                     "(the insert's transaction start), both on the database clock")
PLURAL = {"job": "jobs", "delivery": "deliveries"}
STATEMENTS_TOP = 10     # statements listed in a phase's pg_stat_statements profile
LOAD_CLIENTS = 2        # latency under load: OAuth clients each event fans out to...
LOAD_PROBE_GAP_MS = 20  # ...and the gap between the no-op probes inserted meanwhile
LOAD_KEPT_UP_SECONDS = 1  # kept up: no more deliveries queued at the end than this many seconds of the load

ISOLATION_BACKLOG = 150           # deliveries waiting for the hanging endpoint
ISOLATION_EVENTS = 20             # new events for the healthy endpoint...
ISOLATION_GAP_MS = 100            # ...this far apart
ISOLATION_REQUEST_TIMEOUT = "2s"
ISOLATION_LIMIT = 4               # the worker's default --endpoint-concurrency
ISOLATION_TARGET_P50_MS = 250
ISOLATION_TARGET_MAX_MS = 1000
ISOLATION_HANGING = "iso-hanging"
ISOLATION_HEALTHY = "iso-healthy"


PGBOUNCER_POOL_SIZE = 20  # server connections per database and user; one worker holds at most 3 + 2 + 8 clients

# The per-endpoint phases (issue 22's measures).
SLOW_DELAY_S = 0.2        # the slow endpoint answers each request after this long...
SLOW_EVENTS = 8000        # ...with this many deliveries queued (more than it takes in the window)
SLOW_WARM_S = 5           # measured from this many seconds after the insert...
SLOW_MEASURE_S = 15       # ...for this long
FAIR_BACKLOG = 100000     # deliveries queued for the busy endpoint
FAIR_PROBES = 20          # events for the new endpoint, one at a time...
FAIR_GAP_MS = 100         # ...this far apart
RETRY_AFTER_EVENTS = 300  # deliveries queued for the endpoint whose first answer is 429...
RETRY_AFTER_SECONDS = 2   # ...with this Retry-After
RETRY_AFTER_EXCUSE_S = 0.02   # the first requests arriving this soon after the 429 left before it
