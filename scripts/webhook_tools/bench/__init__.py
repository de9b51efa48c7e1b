"""scripts/bench: benchmarks webhook-worker against the PostgreSQL server that DATABASE_URL names.

    scripts/with-postgres scripts/bench        (what `make bench` runs, after a release build)

Phases, in this order, each bounded by BENCH_PHASE_TIMEOUT seconds (BENCH_SKIP names in brackets):

  1. queue burn-down [burndown]: BENCH_JOBS no-op jobs inserted in one statement, worked off by
     ONE worker, then (fresh jobs) by TWO workers started together; jobs/s from the database's own
     timestamps (job_attempts: count / (max(finished_at) - min(started_at))), and the ratio. Also
     the rate per tenth of the jobs (attempts in finished_at order, ten equal parts, each over the
     time since the previous part's last one), so that a slowdown shows.
  2. pick-up latency [latency]: one idle worker; BENCH_PROBES no-op jobs inserted one at a time,
     BENCH_PROBE_GAP_MS apart, from one psql session; latency = job_attempts.started_at (the
     claim, just before the handler starts) - jobs.created_at (the insert's transaction start).
  3. delivery [delivery]: the web app's dev tables, one Linear definition, BENCH_ACCOUNTS users
     with an integration account each, BENCH_CLIENTS OAuth clients (scope `integration`, a secret,
     granted by every user; each event fans out to every one of them) whose webhookUrl is nginx answering 204
     (see below); BENCH_EVENTS integration.connected jobs inserted in one statement; deliveries/s
     (delivered / (last delivered_at - the insert)), insert-to-receipt latency (nginx's clock and
     the database's are this machine's), and every delivery checked against nginx's log (one
     request per delivery, each answered 204); the CPU time per delivery of the worker,
     PostgreSQL and nginx, and the rate this machine's cores could reach at that cost (cores /
     their sum), the ceiling the measured rate sits under. BENCH_CLIENTS is 16 so that the
     phase measures the worker rather than one endpoint's limit (adaptive: it starts at 4 in
     flight, --endpoint-concurrency, and grows to --endpoint-max-concurrency).
     [delivery-2-clients] then runs the same with 2 clients, issue 22's two-endpoint figure
     (skipped when BENCH_CLIENTS is 2).
  3b. through PgBouncer [pgbouncer]: scripts/pgbouncer starts Debian's PgBouncer (1.18) in
     transaction pooling mode in front of the bench database (default_pool_size 20: one worker
     opens at most 3 + 2 + 8 client connections), then the 1-worker burn-down of 1 and the
     BENCH_CLIENTS delivery run of 3 run again, the same functions with the same checks (every job
     succeeded once; every delivery delivered, and once, by nginx's log), the worker started with
     --database-url at PgBouncer, --prepared-statements off and --listen-database-url at
     PostgreSQL (docs/operations.md, "Behind PgBouncer"); PgBouncer is stopped afterwards. Figures:
     jobs/s, deliveries/s and database time per job and per delivery, each beside the direct run's
     of this bench (ratio through the pooler / direct; none when that phase was skipped), and
     PgBouncer's CPU share beside the others.
  4. latency under load [latency-under-load]: one worker, default settings, 2 OAuth clients on
     nginx; a thread inserts BENCH_LOAD_RATE integration.connected events per second (2 deliveries
     each), and after 1 s no-op jobs go in one at a time 20 ms apart from another psql session
     for BENCH_LOAD_SECONDS; figures: their pick-up p50/p99 (as in 2), the deliveries per second
     achieved between the first and the last of them (delivered_at in that window), and whether
     the worker kept up (the deliveries still queued at the window's end: at most 1 s worth).
  5. isolation [isolation]: one OAuth client whose webhookUrl never answers (a hanging endpoint in
     this script: it reads each request and holds it until the worker closes the connection)
     with a backlog of 150 deliveries (150 integration.connected events fanned out to it alone),
     and a healthy client (the worker's own receiver, `webhook-worker receive --quiet`, which
     prints each request's arrival) getting 20 new events inserted one at a time 100 ms apart
     once 4 requests hang; ONE worker with --request-timeout 2s and default settings otherwise
     (4 deliveries per endpoint at once, the circuit open after 5 failures in a row, 30 s
     cool-down). Figures: the healthy endpoint's insert-to-POST latency p50/max (receiver
     arrival - the event job's created_at; targets p50 < 250 ms, max < 1 s: a miss is a problem),
     beside the hanging endpoint's in-flight peak (requests open at once at it, and its running
     jobs sampled every 50 ms in the database; limit 4, more is a problem), its request count,
     and when its circuit opened (it must, within 30 s).
  5b. per endpoint [one-endpoint, slow-endpoint, fairness, retry-after] (endpoints.py), each
     OAuth client with a user and an account of its own, so that an event goes to one endpoint:
     the delivery run of 3 to ONE client on nginx (BENCH_ONE_ENDPOINT_EVENTS events, 10000); one
     healthy endpoint answering after 200 ms with 8,000 deliveries queued, its deliveries/s from
     5 s to 20 s after the insert and its peak of requests in flight (and the endpoint's limit in
     the database, when the build keeps one); 100,000 deliveries queued for one endpoint, then
     20 events 100 ms apart for a second, whose insert-to-receipt p50/max is the figure; an
     endpoint answering its first request 429 with Retry-After: 2 and 300 deliveries queued: the
     requests that arrive after that answer and before the 2 s are up, and of them those sent
     after an answer could have come back (not among the first 4, sent at once, arriving within
     20 ms of the 429; target: none).
  6. backlog [backlog]: BENCH_BACKLOG_JOBS no-op jobs inserted in one statement and drained by
     one worker, measured as in 1: jobs/s, its ratio to the 1-worker burn-down's (small backlog)
     rate, and the rate per tenth (steady: the slowest tenth at least 80 % of the overall rate).
  7. history [history]: the partitioned history (issue 23) in the bench database, its partitions
     remade daily from 32 days ago: BENCH_HISTORY_ROWS (5,000,000) delivery attempts in each of
     two past days; one day removed by DELETE (one statement, as prune's batches would add up to),
     the other by DETACH PARTITION ... CONCURRENTLY and DROP TABLE, as the upkeep does: the seconds,
     the WAL written (pg_current_wal_insert_lsn before and after) and the disk space returned of
     each (DELETE returns none until a VACUUM FULL). Then 30 days of BENCH_HISTORY_ROWS / 50
     deliveries a day (at least 1,000) for 100 clients, and the console's search (a client's newest
     50 of the last 30 days) 200 times, each timed inside the server: p50 and p95. Targets: the
     drop within 1 s, its WAL at most 1 % of DELETE's, the search's p95 within 100 ms.
     BENCH_HISTORY_ROWS=50000 runs it in seconds.
  7b. history load [history-load]: BENCH_HISTORY_LOAD_ROWS (50,000,000) rows of history
     (deliveries, their attempts and job attempts, 2 : 2 : 1, UUID version 7 ids) over the 30 days
     before yesterday in daily partitions, then the delivery phase (3) again with that history
     kept: deliveries/s and database time per delivery beside phase 3's (an empty history); target:
     within 10 %. Filling 50 million rows takes several minutes; phase 3 must run in the same bench.
  8. pgbench ceiling on the same cluster [pgbench]: one-row UPDATE per transaction, 1 client and
     8 clients, BENCH_PGBENCH_SECONDS each.
  Throughout: the peak RSS (VmHWM) of every worker process, read just before its SIGTERM; and in
  phases 1, 3, 3b, 4 and 6 the CPU time (utime + stime from /proc) of the worker, of PostgreSQL (the
  postmaster and its children, when the server runs on this machine) and of nginx, each as a
  percentage of one core over the phase's wall time.

The throughput receiver (phases 3 and 4, and the soak) is Debian's nginx, so that it costs next to
nothing beside the worker (its CPU share is printed beside the figure): started here as a process
of its own (`nginx -p DIR -c DIR/nginx.conf -e DIR/error.log -g 'daemon off;'`, nothing under
/var needed), one worker process, listening on a free port of 127.0.0.1, `return 204`, HTTP/1.1
keep-alive, a buffered access log (arrival time, delivery id, connection) read once it stops.
`make bench` installs nginx (scripts/ensure-deps with NEED_NGINX=1). The worker's receiver stays
only where each request's arrival is needed as it happens (the isolation phase).

Database time per unit of work (phases 1, 3, 3b and 6): pg_stat_statements is reset just before the
measured work starts (after the workers' warm-up job in 3); afterwards the total_exec_time of the
top-level statements run in the bench database, the bench's own left out (they carry the comment
TAG), divided by the jobs or deliveries. The top STATEMENTS_TOP statements by time (nested ones
too, marked: with pg_stat_statements.track = all a function's statements are counted inside its
call and on their own) go to stderr and the JSON, per delivery or job: calls, ms per call, ms.
scripts/pg loads the module for PG_TUNING=durable (or PG_STAT_STATEMENTS=1); without it the bench
says so and carries on.

The worker phases run in their own database (webhook_worker_bench) and pgbench in bench_pgbench,
both created on DATABASE_URL's server (dropped first if present, dropped again at the end unless
BENCH_KEEP=1), so nothing in DATABASE_URL's own database is touched; the role needs CREATEDB.

Settings (environment): WEBHOOK_WORKER_BIN (default .build/release/webhook-worker), BENCH_JOBS
(100000), BENCH_PROBES (200), BENCH_PROBE_GAP_MS (20), BENCH_EVENTS (2000), BENCH_CLIENTS (16),
BENCH_ACCOUNTS (50), BENCH_LOAD_RATE (500 events/s), BENCH_LOAD_SECONDS (10), BENCH_BACKLOG_JOBS
(1000000), BENCH_HISTORY_ROWS (5000000), BENCH_HISTORY_LOAD_ROWS (50000000), BENCH_PGBENCH_SECONDS (10),
BENCH_PHASE_TIMEOUT (600), BENCH_ONE_ENDPOINT_EVENTS (10000), BENCH_REPEAT (1: how many times the
delivery, 2-client and one-endpoint throughput phases run; each is judged on its median run),
BENCH_WORKER_ARGS (extra flags for every `run`, e.g. "--concurrency 64"), BENCH_SKIP (comma list of
burndown, latency, delivery, delivery-2-clients, pgbouncer, latency-under-load, isolation, one-endpoint,
slow-endpoint, fairness, retry-after, backlog, history, history-load, pgbench), BENCH_KEEP=1,
BENCH_LOCK (a file the bench holds with flock while it measures, not while it loads history).
The worker's own variables (WORKER_*, WEBHOOK_*, LOG_*, OTEL_*) are not passed on to the replicas.

Soak mode (BENCH_SOAK_SECONDS > 0, what `make soak` runs): instead of the phases,
BENCH_SOAK_RATE (20) events per second, each to BENCH_SOAK_CLIENTS (2) OAuth clients on nginx,
with the worker's memory, open files and database connections printed every 30 s; it fails when
they grow. Writes .bench/soak-<UTC timestamp>.json.

Prints the PostgreSQL settings in force and one table, with issue 11's targets beside the figures
they judge (met, floor met or MISSED); writes the same figures, the targets and the statement
profiles as JSON to .bench/results-<UTC timestamp>.json. Exit status: 0 when every phase completed
cleanly, 1 when a phase failed or a worker misbehaved (the table says which; a missed target is
not a failure, except the isolation phase's), 2 on bad settings.

The code: run.py (the order), context.py (the state every phase shares), one module per phase
(burndown, latency, delivery, isolation, history, history_load, pgbench, soak), receivers.py, workers.py, cpu.py,
statements.py (pg_stat_statements), figures.py (the computations of figures, unit tested),
targets.py and report.py (the table).
"""
