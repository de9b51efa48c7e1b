"""The chaos run's settings: the replicas' flags, the phases' timings, the receiver's
misbehaviour, and the clock its lines print."""

import time

CHAOS_DB = "webhook_worker_chaos"

# The replicas' settings: always-fail endpoints exhaust their 4 attempts (1 + 3 retries) in
# about 4 s, and the lease exceeds the request timeout by more than 1 s, as the worker demands.
REQUEST_TIMEOUT = 1.0
LEASE = 3.0
SHUTDOWN_TIMEOUT = 2.0
RETRY_SCHEDULE = "1s,1s,2s"
MAX_ATTEMPTS = 4
# Endpoint isolation: at most ENDPOINT_CONCURRENCY deliveries per endpoint (OAuth client) in
# flight across the replicas (the adaptive limit's ceiling too, so that the check below holds a
# fixed bound while each endpoint's limit moves between 1 and it); a circuit opens after
# ENDPOINT_FAILURE_THRESHOLD failures in a row and holds the endpoint's deliveries for a
# cool-down that doubles with each trip (up to 32 times). The cool-down is short here, as the
# retry schedule is, so that a run sees circuits open, probe, reopen and close again.
ENDPOINT_CONCURRENCY = 4
ENDPOINT_FAILURE_THRESHOLD = 5
ENDPOINT_COOLDOWN = "1s"
WORKER_FLAGS = [
    "--allow-http", "--allow-private-networks",
    "--request-timeout", "1s", "--lease", "3s", "--poll-interval", "500ms",
    "--retry-schedule", RETRY_SCHEDULE, "--shutdown-timeout", "2s",
    "--endpoint-concurrency", str(ENDPOINT_CONCURRENCY),
    "--endpoint-max-concurrency", str(ENDPOINT_CONCURRENCY),
    "--endpoint-failure-threshold", str(ENDPOINT_FAILURE_THRESHOLD), "--endpoint-cooldown", ENDPOINT_COOLDOWN,
    "--log-format", "json", "--log-level", "warning",
]
# A replica given SIGTERM must be gone within the shutdown timeout, the 5 s the worker gives
# cancelled handlers, and some slack for a slow (debug) build.
GRACEFUL_EXIT_LIMIT = SHUTDOWN_TIMEOUT + 5 + 8

# The phases with checks of their own (see the docstring).
LOCK_LEASES = 3                 # the "OAuthClient" lock is held this many leases (9 s)
LOCK_EVENTS = 30                # events that arrive while it is held
LOCK_SETTLE_TIMEOUT = 60.0      # for the lock phase's jobs to finish once the lock goes
PG_DOWN_EXIT_LIMIT = SHUTDOWN_TIMEOUT + 5   # SIGTERM while PostgreSQL is down: exit 0 within this
CONNECT_WINDOW = 3.0            # seconds of terminating freshly opened backends
CONNECT_WINDOW_TICK = 0.007     # one pg_terminate_backend query every 7 ms
CONNECT_WINDOW_AGE = "100 ms"   # a backend younger than this counts as freshly opened
CONNECT_WINDOW_WATCH = 1.0      # no restarts for this long after the window

# Receiver behaviour per endpoint.
FLAKY_FAILURE_SHARE = 0.30
SLOW_SHARE = 0.40
SLOW_SECONDS = 2.0
RESET_SHARE = 0.40
FLAP_SECONDS = 3.0              # the flapping endpoint: 3 s answering 200, then 3 s answering 503, ...
# The degrading endpoint answers 200 in 5 ms, except for DEGRADE_SECONDS from DEGRADE_AFTER
# seconds into the faults, when it answers after 2 s (past the 1 s request timeout). Its adaptive
# limit must fall to the floor (1) within DEGRADE_CUT_LIMIT seconds of the slowdown, and be back
# at its limit from before within DEGRADE_RAISE_LIMIT seconds of the recovery (issue 22). Checked
# in runs of DEGRADE_MIN_RUN seconds or more: a shorter run has its PostgreSQL outage inside the
# window and too little time after it.
DEGRADE_FAST = 0.005
DEGRADE_SLOW = 2.0
DEGRADE_AFTER = 2.0
DEGRADE_SECONDS = 8.0
DEGRADE_CUT_LIMIT = 10.0
DEGRADE_RAISE_LIMIT = 30.0
DEGRADE_MIN_RUN = 45
HANG_LIMIT = 120.0              # the hanging endpoint holds a request until the sender gives up (or this)

# Endpoints that never succeed: their circuits stay open, so that their last deliveries are still
# held (snoozed, no attempt spent) when everything else has drained. The operator then ends them:
# the hanging endpoint's with `deliveries cancel --client` (the kind paused meanwhile, so that no
# attempt is in flight), the always-500 one's with `endpoints disable` (dead letters,
# endpoint_disabled). Behaviours; Chaos.client_of maps them to client ids.
HELD_ENDPOINTS = ("hang", "fail")

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
USERS = 8
LISTEN_APP = "webhook-worker-listen"
POOL_APP = "webhook-worker"

# Matching a request to the attempt that sent it: the claim (DB clock) comes before the request
# (receiver clock, same machine); a small tolerance for clock reads.
TOLERANCE = 0.05


T0 = time.time()


def stamp(t=None):
    return f"{(t if t is not None else time.time()) - T0:7.2f}s"

