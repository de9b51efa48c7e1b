"""scripts/chaos, fault injection: proves that webhook-worker loses nothing while its replicas are killed,
stopped, cut off from PostgreSQL, and PostgreSQL itself restarts.

    scripts/chaos                        (make chaos: scripts/with-postgres scripts/chaos)
    CHAOS_SECONDS=20 scripts/chaos       (the short version)

The run:

  1. Starts its own throwaway PostgreSQL (scripts/pg start .pg/chaos-<pid>, destroyed at the end),
     so that it can restart and stop it; DATABASE_URL is ignored. CHAOS_PG_DIR=<scripts/pg cluster
     dir> uses (and restarts) that cluster instead, in a database of its own dropped at the end.
     Migrates, loads sql/dev/001_app_tables.sql, and seeds users, one Linear definition,
     integration accounts and OAuth clients whose webhookUrl points at a local receiver with
     endpoints that misbehave on purpose: healthy (three clients), flaky (500 on 30 %), slow
     (2 s on 40 %, beyond the 1 s request timeout), reset (RST on 40 %), fail (always 500),
     gone (410), hanging (reads the request and never answers, until the sender gives up and
     closes the connection), flapping (3 s answering 200, then 3 s answering 503, and so on),
     degrading (200 in 5 ms, but 2 s, past the request timeout, for 8 s from 2 s into the faults),
     and clients that must never be called (wrong scope, inactive, revoked grant, no URL). The
     receiver records every request: path, X-Webhook-Delivery, arrival time, status answered,
     body hash and signatures, and for the hanging endpoint when the sender closed it.
  2. Runs CHAOS_REPLICAS (3) replicas: `run --allow-http --allow-private-networks
     --request-timeout 1s --lease 3s --poll-interval 500ms --retry-schedule 1s,1s,2s
     --shutdown-timeout 2s --endpoint-concurrency 4 --endpoint-max-concurrency 4
     --endpoint-failure-threshold 5
     --endpoint-cooldown 1s --worker-id chaos-<slot>-<generation> --log-format json
     --log-level warning`, logs in a temporary folder. The cool-down is short, as the retry
     schedule is (it doubles with each trip, up to 32 s), so circuits open, probe, reopen and
     close within a run. From the start of the lock phase to the operator's step (5.), a
     thread samples every 50 ms, on a psql session of its own, the running webhook.deliver jobs
     per concurrency_key (endpoint) and the circuit state of every endpoint.
  3. The lock phase, once the replicas listen and before any other fault or insert: the web app
     holds LOCK TABLE "OAuthClient" IN ACCESS EXCLUSIVE MODE (BEGIN ... COMMIT on a psql session
     of its own) for 9 s, three leases, while 30 integration.connected events arrive (over the
     first 3 s); the fan-out reads that table, so every handler waits the lock out. Once the lock
     goes, the phase waits for the queue to empty and nothing to be pending (up to 60 s), except
     deliveries of the hanging and always-500 endpoints held by their open circuits: those go on
     into the run.
  4. For CHAOS_SECONDS (60): the web app's inserts arrive every 50-100 ms (random seeded
     account, its user), retried through outages, while faults are injected: kill -9 of a random
     replica every 3-6 s (restarted 0.5-2 s later under a new worker id), a graceful SIGTERM every
     8-14 s (restarted once it has exited), pg_terminate_backend of the replicas' connections
     every 4-8 s (the LISTEN ones, all, or a random half), and ONE PostgreSQL restart
     (scripts/pg restart, fast mode) near the middle. Two quiet windows (no random fault; the
     inserts go on; their time is added to the run) at a fifth and three quarters of it:
     - SIGTERM while PostgreSQL is down: scripts/pg stop (fast mode), SIGTERM to a replica up for
       3 s or more, its exit timed (every 20 ms) up to the shutdown timeout plus 5 s (7 s), then
       scripts/pg start (same port) and the replica restarted; a replica still running then gets
       the usual graceful limit before kill -9. Counted as a PostgreSQL outage and a graceful
       stop where losses and duplicates are explained.
     - the connect window: once every replica is up and listening, all of the replicas'
       backends are terminated, then for 3 s, every 7 ms, each of their backends opened less
       than 100 ms ago (application_name webhook-worker or webhook-worker-listen), so
       connections die right after authentication, at or before their first statement. No
       replica is restarted during it and the 1 s after.
  5. Stops faults and inserts, keeps the replicas running until the queue is empty and no delivery
     is pending (CHAOS_DRAIN_TIMEOUT, 120 s), reads each replica's peak RSS (VmHWM) and stops them
     with SIGTERM. The hanging and always-500 endpoints never succeed, so their circuits never
     close and their last deliveries are still held (snoozed, last_error 'waiting: ...', no
     attempt spent) when everything else has drained. Then, and only then, the operator ends
     them: `jobs pause webhook.deliver`, wait until no delivery runs, `deliveries cancel --client
     client-hanging`, `jobs resume webhook.deliver` (paused so that no attempt is in flight and
     none is snoozed again after the cancel), and `endpoints disable client-fail` (its held
     deliveries end in the dead letters as endpoint_disabled). The drain then goes on until the
     queue is empty.
  6. Checks (exit 1 on any violation) and prints the figures:
     - every acknowledged insert is one integration.connected job, and every event fanned out to
       exactly its expected recipients, computed in SQL from the seeded clients and grants;
     - every job (any kind) ended exactly once: a succeeded or cancelled attempt, or a dead
       letter; none used more than its attempts; nothing is left in the queue;
     - every delivery ended delivered, failed (its webhook.deliver job in the dead letters) or
       cancelled (only the operator's, of the hanging endpoint); none pending; healthy endpoints
       all delivered, the 410 one failed at once, the always-500 one failed after its 4 attempts
       or (held by its open circuit) as endpoint_disabled once the operator disabled it, the
       flapping one delivered or failed after its 4 attempts, the hanging one failed after its 4
       attempts, every one a timeout, or (held) cancelled by the operator with fewer; never
       delivered; non-recipients never called;
     - the receiver got the stored bytes, correctly signed, at the client's URL; every delivered
       delivery was answered 2xx at least once;
     - duplicates. Every request the receiver saw is matched to the job attempt that sent it
       (the delivery job's latest attempt claimed before the request arrived). A recorded
       attempt (job_attempts succeeded/failed, with its delivery_attempts row) sent exactly one
       request; an attempt whose outcome was dropped (job_attempts 'lost': the lease expired;
       'released': cut off by a graceful stop) at most one, and that request is sent again
       later: a duplicate. Each duplicate must be explained by a kill -9 of that replica between
       the request and the reap (the kill log), a graceful stop of it, or a PostgreSQL restart or
       backend termination during the attempt; a delivery answered 2xx twice must be one of
       these (or a request the worker timed out on). Retries after a failure are not duplicates.
     - graceful stops (during the run and at the end) exit 0 within the shutdown timeout plus
       the 5 s cancellation grace; no replica exits on its own (a start refused while PostgreSQL
       restarts excepted).
     - the lock phase ("lock held 9.0s over 3 leases: 30 events, N deliveries delivered,
       0 duplicates, 0 lost"): every one of its events fanned out to exactly its recipients, each
       delivery reached its recipient and ended (healthy endpoints delivered; the others as the
       endpoint makes them), no delivery was sent again (a dropped attempt's request resent, or
       answered 2xx twice), and no attempt of its jobs (the events' and their deliveries') was
       recorded lost; the lock held for three leases and the jobs finished within 60 s. The
       phase's deliveries to the hanging and always-500 endpoints outlive it (held by their
       circuits): of theirs, only attempts and resent requests before the phase settled count
       here, and one that never reached its endpoint may end failed or cancelled.
     - SIGTERM while PostgreSQL is down: the replica exited 0 within 7 s (the line gives the
       measured time and status, or what happened once PostgreSQL was back).
     - the connect window: no replica that lived through it crashed ("0 crashes"): none exited
       on its own or by a signal, then or later in the run (Swift's backtracer can take 10 s or
       more before a crashed process exits), nor wrote a crash report; and at least one freshly
       opened backend was terminated (the line gives the counts). Examples name the crash and
       the first frame in the worker's own sources.
     - endpoint concurrency: no endpoint ever had more than 4 webhook.deliver jobs running at
       once across the replicas (the 50 ms samples; the line gives the hanging endpoint's peak
       and every other endpoint's), and the hanging endpoint never had more than 4 requests open
       at once at the receiver (from arrival until the sender closed the connection) unless one
       of them belongs to an attempt that was lost or released (its job may run again elsewhere
       while that request is still open).
     - the hanging endpoint's circuit opened: its webhook_worker.endpoints row has trips >= 1
       (or a sample saw it open), it never recovered nor closed (it never answered); the line
       gives trips, state, failures recorded, requests received and deliveries held at the end.
     - the adaptive limit follows a slowdown (runs of 45 s or more): the degrading endpoint's
       limit in force (endpoint_concurrency.applied, in the 50 ms samples) was at the floor, 1,
       within 10 s of its slowdown, and back at its limit from before within 30 s of its
       recovery; the line prints the limit's trace. A shorter run prints the trace unchecked.
     Figures: events, deliveries by outcome and endpoint, kills, graceful stops, backend
     terminations, PostgreSQL restarts and stops, duplicates and their causes, lost and released
     attempts, insert-to-delivery time for healthy endpoints (receiver clock, p50/p99/max; for
     every event, and for the events of the run, after the lock phase, beside the hanging
     endpoint's in-flight peak), every endpoint's circuit (state, openings seen, trips,
     recoveries, failures), the deliveries held at the end and what the operator did, peak RSS,
     attempts failed on the worker's own database errors, non-JSON log lines, and deadlocks in
     the PostgreSQL log (notes, not violations, as are lost attempts no fault explains).
     On failure: up to 5 examples per violated check with the delivery's job_attempts,
     delivery_attempts, dead letters and receipts, the replica's own lease warnings around an
     unexplained loss, and the logs of replicas with error-level lines; the worker logs and the
     PostgreSQL log stay in the temporary folder.

Test instruments: the chaos database gets two tables of its own in public, chaos_events (the
insert's sequence number and job id, written by the insert statement itself, so a retried insert
after an ambiguous failure never doubles an event) and chaos_jobs (every job ever inserted, by
an AFTER INSERT statement trigger on webhook_worker.jobs), since finished jobs leave the queue.

Settings (environment): WEBHOOK_WORKER_BIN (default .build/release/webhook-worker),
CHAOS_SECONDS (60, at least 10), CHAOS_SEED (the random seed, printed; the same seed gives the same
fault schedule and data, timing aside), CHAOS_REPLICAS (3), CHAOS_DRAIN_TIMEOUT (120),
CHAOS_PG_DIR, CHAOS_KEEP_LOGS=1 (keep the worker logs even when the run passes; they are always
kept when it fails), CHAOS_PGBOUNCER=1: the replicas' statements go through a PgBouncer in
transaction mode (scripts/pgbouncer start .pg/chaos-pgbouncer-<pid>, in front of the chaos
database, default_pool_size 20, destroyed at the end) with --prepared-statements off, and their
LISTEN connection (--listen-database-url) straight to PostgreSQL, as docs/operations.md ("Behind
PgBouncer") says to run them; PostgreSQL's restarts and backend terminations then hit PgBouncer's
server connections, which it opens again by itself. The inserter, the samplers and the operator's
commands stay on PostgreSQL directly.

Exit status: 0 when every check passes, 1 when a check fails or the run could not complete,
2 on bad settings.

The code: run.py (the run's state and its order), cluster.py, receiver.py, replicas.py, faults.py,
phases.py, inserter.py and drain.py run it; analysis/ checks and reports (CHECKS in
analysis/__init__.py lists the checks in order); settings.py holds the constants above.
"""
