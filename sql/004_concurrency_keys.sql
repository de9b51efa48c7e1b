-- Concurrency keys: a job may carry a key (an endpoint, a tenant), and a worker may cap how many
-- jobs of a kind run at once per key, summed over every replica.
--
-- Why this shape (River Pro, Oban Pro, graphile-worker and Hatchet were read first):
-- graphile-worker's named queues lock one job_queues row per queue, but only as a mutex (limit
-- 1), and its claim lists every unlocked queue. Hatchet keeps a slot row per queued task and
-- fills slots round-robin per key in a scheduler loop that visits every key of a strategy. Oban
-- Pro and River Pro keep the limits in the engine: each fetch takes a lock for the queue, counts
-- running jobs per partition, then fetches with per-partition limits, and jobs over a limit are
-- skipped by the query. All are exact because one transaction at a time decides for a queue or a
-- key, and none promises a cost that ignores idle keys and one key's backlog. Here the claim walks
-- a small table with one row per key that may have work, ordered by the key's first waiting job
-- (its "head"), in (priority, run_at, id) order; a key whose head is in the future is never read,
-- and a saturated key costs one row and one count, not its backlog. Each key row is locked with
-- SKIP LOCKED and its running jobs are counted in a later statement (a new snapshot), so claims
-- for a key are serialized and each sees the others' commits: the limit is exact. A head is only a
-- lower bound: writers never lock or update it (no contention on a busy key, any isolation
-- level); they append a wake-up row, which claims fold in. Running jobs are counted, never kept
-- in a counter, so finishing, reaping or deleting jobs cannot make anything drift.
--
-- Unkeyed jobs keep today's claim: an ordered walk of an index that holds only them, stopping
-- after LIMIT rows. Keys are scoped by kind: a limit is configured per kind, and the same key on
-- another kind is another partition.

ALTER TABLE webhook_worker.jobs
    ADD COLUMN concurrency_key text CHECK (concurrency_key <> '' AND length(concurrency_key) <= 500);

COMMENT ON COLUMN webhook_worker.jobs.concurrency_key IS
    'Optional. Jobs of one kind with the same key share that kind''s per-key limit (when the worker sets one).';

-- The unkeyed claim walks this index in order and stops after LIMIT rows, as the claim walked
-- jobs_claim_idx before. A keyed backlog is not in it, so it cannot slow the unkeyed walk.
CREATE INDEX jobs_claim_unkeyed_idx ON webhook_worker.jobs (priority, run_at, id)
    WHERE state = 'available' AND concurrency_key IS NULL;
-- A key's waiting jobs in claim order: the claim takes the first few, and heads are read from it.
CREATE INDEX jobs_claim_keyed_idx ON webhook_worker.jobs (kind, concurrency_key, priority, run_at, id)
    WHERE state = 'available' AND concurrency_key IS NOT NULL;
-- Counting a key's running jobs reads at most the limit's worth of entries.
CREATE INDEX jobs_running_key_idx ON webhook_worker.jobs (kind, concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
-- jobs_claim_idx stays for replicas still running the previous claim during a rolling upgrade;
-- a later migration can drop it once every replica calls claim_jobs.

-- One row per (kind, key) that may have waiting jobs. head_* is a lower bound of the key's first
-- waiting job in claim order: it may be too early (the job was deleted or moved later, and the
-- next claim that visits the key corrects it or deletes the row) but never later than a waiting
-- job, because whatever makes a job wait appends a wake-up that lowers the head.
CREATE TABLE webhook_worker.concurrency_keys (
    kind             text        NOT NULL,
    concurrency_key  text        NOT NULL,
    head_priority    smallint    NOT NULL,
    head_run_at      timestamptz NOT NULL,
    head_id          bigint      NOT NULL,
    PRIMARY KEY (kind, concurrency_key)
);
COMMENT ON TABLE webhook_worker.concurrency_keys IS
    'Claim bookkeeping: keys that may have waiting jobs, by their first one. Derived from jobs; rebuild with webhook_worker.rebuild_concurrency_keys().';
-- The claim reads, per kind and priority, the keys whose head is due, in head order.
CREATE INDEX concurrency_keys_head_idx ON webhook_worker.concurrency_keys (kind, head_priority, head_run_at, head_id);

-- Appended by the triggers below whenever a keyed job becomes waiting (inserted, retried, released,
-- reaped) or moves earlier; claims delete them and lower the key's head. Appending never waits on
-- a lock, and a wake-up commits with its job, so a claim that could not yet see the job will see
-- the wake-up later. The claim never advances a head past a job it could not see without one.
CREATE TABLE webhook_worker.concurrency_key_wakeups (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text        NOT NULL,
    concurrency_key  text        NOT NULL,
    priority         smallint    NOT NULL,
    run_at           timestamptz NOT NULL,
    job_id           bigint      NOT NULL
);
COMMENT ON TABLE webhook_worker.concurrency_key_wakeups IS
    'Claim bookkeeping: keyed jobs that became waiting since the last claim. Emptied by every claim.';

-- Both tables are small and churn with every claim.
ALTER TABLE webhook_worker.concurrency_keys SET (
    autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE webhook_worker.concurrency_key_wakeups SET (
    autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.0, autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0);

-- One wake-up per key per inserting statement: a bulk insert of a key's backlog costs one row.
CREATE FUNCTION webhook_worker.wake_inserted_concurrency_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_worker.concurrency_key_wakeups (kind, concurrency_key, priority, run_at, job_id)
    SELECT DISTINCT ON (kind, concurrency_key) kind, concurrency_key, priority, run_at, id
    FROM inserted_jobs
    WHERE state = 'available' AND concurrency_key IS NOT NULL
    ORDER BY kind, concurrency_key, priority, run_at, id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_wake_concurrency_keys_insert
    AFTER INSERT ON webhook_worker.jobs
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_worker.wake_inserted_concurrency_keys();

-- Retries, releases, reaped leases, and a DBA moving a job earlier or changing its key. The WHEN
-- clause keeps the claim, lease renewals and every other update free of any call.
CREATE FUNCTION webhook_worker.wake_updated_concurrency_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_worker.concurrency_key_wakeups (kind, concurrency_key, priority, run_at, job_id)
    VALUES (NEW.kind, NEW.concurrency_key, NEW.priority, NEW.run_at, NEW.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_wake_concurrency_keys_update
    AFTER UPDATE ON webhook_worker.jobs
    FOR EACH ROW
    WHEN (NEW.state = 'available' AND NEW.concurrency_key IS NOT NULL
          AND (OLD.state <> 'available' OR OLD.kind <> NEW.kind
               OR OLD.concurrency_key IS DISTINCT FROM NEW.concurrency_key
               OR (NEW.priority, NEW.run_at) < (OLD.priority, OLD.run_at)))
    EXECUTE FUNCTION webhook_worker.wake_updated_concurrency_key();

-- Claims up to `batch` runnable jobs of `kinds` in (priority, run_at, id) order, among what the
-- limits allow: a keyed job of a kind in `keyed_kinds` is taken only while fewer than the matching
-- `key_limits` entry of its kind and key are running. Keyed jobs of other kinds, and jobs without
-- a key, have no limit. One call is one claim: SELECT * FROM webhook_worker.claim_jobs(...).
--
-- 1. Fold committed wake-ups into the heads (at most 1000 a claim; others are left for the next).
-- 2. Unkeyed jobs: the ordered walk of jobs_claim_unkeyed_idx, FOR UPDATE SKIP LOCKED, LIMIT batch.
-- 3. Keyed jobs: per kind and priority, the keys whose head is due, in head order. Each key row is
--    locked (SKIP LOCKED: another claim is deciding for it); then, in new statements, its running
--    jobs are counted and its first (limit - running) waiting jobs locked. The walk stops at the
--    first key whose head comes after the batch-th candidate found so far.
-- 4. The first `batch` candidates in order are leased and returned.
-- 5. The heads of the keys taken from are moved to their next waiting job, or the rows deleted.
-- Claims never wait for a lock, except briefly in step 1 for a key row another claim holds.
CREATE FUNCTION webhook_worker.claim_jobs(
    kinds text[],
    keyed_kinds text[],
    key_limits integer[],
    batch integer,
    worker text,
    lease interval
) RETURNS TABLE (
    id bigint, kind text, payload jsonb, priority smallint, attempt integer, max_attempts integer,
    released integer, created_at timestamptz, run_at timestamptz, concurrency_key text
)
LANGUAGE plpgsql
-- Stale statistics must not turn an index walk into reading and sorting a backlog (see JobStore).
SET enable_sort = off
SET enable_bitmapscan = off
-- With sorts priced out, every statement here looks expensive enough to compile with JIT, which
-- costs far more (100+ ms) than the statements themselves (well under a millisecond).
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    c_ids bigint[];
    c_pri smallint[];
    c_run timestamptz[];
    has_cut boolean := false;
    cut_p smallint;
    cut_r timestamptz;
    cut_i bigint;
    k text;
    lim integer;
    p smallint;
    keys_cur refcursor;
    h record;
    running integer;
    allowance integer;
    t_kinds text[] := '{}';
    t_keys text[] := '{}';
BEGIN
    IF batch IS NULL OR batch < 1 OR kinds IS NULL THEN
        RETURN;
    END IF;
    IF cardinality(coalesce(keyed_kinds, '{}')) <> cardinality(coalesce(key_limits, '{}')) THEN
        RAISE EXCEPTION 'keyed_kinds and key_limits differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- 1.
    WITH w AS (
        DELETE FROM webhook_worker.concurrency_key_wakeups w
        WHERE w.id IN (SELECT w2.id FROM webhook_worker.concurrency_key_wakeups w2
                       ORDER BY w2.id LIMIT 1000 FOR UPDATE SKIP LOCKED)
        RETURNING w.kind, w.concurrency_key, w.priority, w.run_at, w.job_id
    ), firsts AS (
        SELECT DISTINCT ON (w.kind, w.concurrency_key) w.kind, w.concurrency_key, w.priority, w.run_at, w.job_id
        FROM w
        ORDER BY w.kind, w.concurrency_key, w.priority, w.run_at, w.job_id
    )
    INSERT INTO webhook_worker.concurrency_keys AS c (kind, concurrency_key, head_priority, head_run_at, head_id)
    SELECT f.kind, f.concurrency_key, f.priority, f.run_at, f.job_id FROM firsts f
    ORDER BY f.kind, f.concurrency_key
    ON CONFLICT ON CONSTRAINT concurrency_keys_pkey DO UPDATE
    SET head_priority = excluded.head_priority, head_run_at = excluded.head_run_at, head_id = excluded.head_id
    WHERE (excluded.head_priority, excluded.head_run_at, excluded.head_id) < (c.head_priority, c.head_run_at, c.head_id);

    -- 2.
    SELECT coalesce(array_agg(u.id), '{}'), coalesce(array_agg(u.priority), '{}'), coalesce(array_agg(u.run_at), '{}')
    INTO c_ids, c_pri, c_run
    FROM (
        SELECT j.id, j.priority, j.run_at
        FROM webhook_worker.jobs j
        WHERE j.state = 'available' AND j.run_at <= now() AND j.kind = ANY(kinds) AND j.concurrency_key IS NULL
        ORDER BY j.priority, j.run_at, j.id
        LIMIT batch
        FOR UPDATE SKIP LOCKED
    ) u;
    IF cardinality(c_ids) >= batch THEN
        SELECT u.p, u.r, u.i INTO cut_p, cut_r, cut_i
        FROM unnest(c_pri, c_run, c_ids) AS u(p, r, i) ORDER BY u.p, u.r, u.i OFFSET batch - 1 LIMIT 1;
        has_cut := true;
    END IF;

    -- 3.
    FOR k IN SELECT DISTINCT x FROM unnest(kinds) AS x WHERE x IS NOT NULL LOOP
        lim := key_limits[array_position(keyed_kinds, k)];
        SELECT min(c.head_priority) INTO p FROM webhook_worker.concurrency_keys c WHERE c.kind = k;
        WHILE p IS NOT NULL AND NOT (has_cut AND p > cut_p) LOOP
            -- FETCH takes one row at a time: a FOR loop would lock ten keys ahead of need.
            OPEN keys_cur FOR
                SELECT c.concurrency_key, c.head_run_at, c.head_id
                FROM webhook_worker.concurrency_keys c
                WHERE c.kind = k AND c.head_priority = p AND c.head_run_at <= now()
                ORDER BY c.head_run_at, c.head_id
                FOR UPDATE SKIP LOCKED;
            LOOP
                FETCH keys_cur INTO h;
                EXIT WHEN NOT FOUND;
                EXIT WHEN has_cut AND (p, h.head_run_at, h.head_id) >= (cut_p, cut_r, cut_i);
                IF lim IS NULL THEN
                    allowance := batch;
                ELSE
                    -- A new statement, so a new snapshot: it sees every claim committed for this key
                    -- before this one locked the key row.
                    SELECT count(*) INTO running FROM (
                        SELECT 1 FROM webhook_worker.jobs j
                        WHERE j.kind = k AND j.concurrency_key = h.concurrency_key AND j.state = 'running'
                        LIMIT greatest(lim, 0)) r;
                    allowance := least(lim - running, batch);
                END IF;
                CONTINUE WHEN allowance <= 0;
                SELECT c_ids || coalesce(array_agg(u.id), '{}'), c_pri || coalesce(array_agg(u.priority), '{}'),
                       c_run || coalesce(array_agg(u.run_at), '{}')
                INTO c_ids, c_pri, c_run
                FROM (
                    SELECT j.id, j.priority, j.run_at
                    FROM webhook_worker.jobs j
                    WHERE j.kind = k AND j.concurrency_key = h.concurrency_key
                      AND j.state = 'available' AND j.run_at <= now()
                    ORDER BY j.priority, j.run_at, j.id
                    LIMIT allowance
                    FOR UPDATE SKIP LOCKED
                ) u;
                t_kinds := t_kinds || k;
                t_keys := t_keys || h.concurrency_key;
                IF cardinality(c_ids) >= batch THEN
                    -- Keep the first `batch` candidates (the others stay locked until commit, unused).
                    SELECT array_agg(u.i ORDER BY u.p, u.r, u.i), array_agg(u.p ORDER BY u.p, u.r, u.i),
                           array_agg(u.r ORDER BY u.p, u.r, u.i)
                    INTO c_ids, c_pri, c_run
                    FROM (SELECT * FROM unnest(c_pri, c_run, c_ids) AS u(p, r, i) ORDER BY u.p, u.r, u.i LIMIT batch) u;
                    cut_p := c_pri[batch];
                    cut_r := c_run[batch];
                    cut_i := c_ids[batch];
                    has_cut := true;
                END IF;
            END LOOP;
            CLOSE keys_cur;
            SELECT min(c.head_priority) INTO p FROM webhook_worker.concurrency_keys c
            WHERE c.kind = k AND c.head_priority > p;
        END LOOP;
    END LOOP;

    -- 4. By primary key, whatever the table's statistics say.
    SELECT coalesce(array_agg(u.i), '{}') INTO c_ids
    FROM (SELECT u.i FROM unnest(c_pri, c_run, c_ids) AS u(p, r, i) ORDER BY u.p, u.r, u.i LIMIT batch) u;
    RETURN QUERY
    UPDATE webhook_worker.jobs j
    SET state = 'running', attempt = j.attempt + 1, locked_by = worker,
        locked_until = now() + lease, attempted_at = now()
    WHERE j.id = ANY(c_ids)
    RETURNING j.id, j.kind, j.payload, j.priority, j.attempt, j.max_attempts, j.released, j.created_at,
              j.run_at, j.concurrency_key;

    -- 5. These key rows are locked by this claim, and the jobs it just took are no longer waiting.
    IF cardinality(t_kinds) > 0 THEN
        UPDATE webhook_worker.concurrency_keys c
        SET head_priority = n.priority, head_run_at = n.run_at, head_id = n.id
        FROM unnest(t_kinds, t_keys) AS t(kind, concurrency_key)
        CROSS JOIN LATERAL (
            SELECT j.priority, j.run_at, j.id FROM webhook_worker.jobs j
            WHERE j.kind = t.kind AND j.concurrency_key = t.concurrency_key AND j.state = 'available'
            ORDER BY j.priority, j.run_at, j.id
            LIMIT 1) n
        WHERE c.kind = t.kind AND c.concurrency_key = t.concurrency_key;
        DELETE FROM webhook_worker.concurrency_keys c
        USING unnest(t_kinds, t_keys) AS t(kind, concurrency_key)
        WHERE c.kind = t.kind AND c.concurrency_key = t.concurrency_key
          AND NOT EXISTS (SELECT 1 FROM webhook_worker.jobs j
                          WHERE j.kind = t.kind AND j.concurrency_key = t.concurrency_key AND j.state = 'available');
    END IF;
END;
$$;

COMMENT ON FUNCTION webhook_worker.claim_jobs(text[], text[], integer[], integer, text, interval) IS
    'The claim. kinds: kinds this replica runs; keyed_kinds/key_limits: per-key limits by kind (same length); batch: free slots; worker: locked_by; lease: locked_until - now().';

-- For DBAs, and after restoring or truncating the bookkeeping tables: wakes every key that has
-- waiting jobs, so the next claims rebuild their heads. Reads every keyed waiting job once.
CREATE FUNCTION webhook_worker.rebuild_concurrency_keys() RETURNS integer
LANGUAGE sql AS $$
    WITH w AS (
        INSERT INTO webhook_worker.concurrency_key_wakeups (kind, concurrency_key, priority, run_at, job_id)
        SELECT DISTINCT ON (kind, concurrency_key) kind, concurrency_key, priority, run_at, id
        FROM webhook_worker.jobs
        WHERE state = 'available' AND concurrency_key IS NOT NULL
        ORDER BY kind, concurrency_key, priority, run_at, id
        RETURNING 1
    )
    SELECT count(*)::integer FROM w;
$$;

-- enqueue() gains the key as its last parameter; calls without it are unchanged.
DROP FUNCTION webhook_worker.enqueue(text, jsonb, timestamptz, integer, integer, text);
CREATE FUNCTION webhook_worker.enqueue(
    kind text,
    payload jsonb DEFAULT '{}'::jsonb,
    run_at timestamptz DEFAULT now(),
    priority integer DEFAULT 0,
    max_attempts integer DEFAULT NULL,
    unique_key text DEFAULT NULL,
    concurrency_key text DEFAULT NULL
) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO webhook_worker.jobs (kind, payload, run_at, priority, max_attempts, unique_key, concurrency_key)
    VALUES (enqueue.kind, enqueue.payload, enqueue.run_at, enqueue.priority::smallint, enqueue.max_attempts,
            enqueue.unique_key, enqueue.concurrency_key)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id;
$$;

-- A dead letter keeps its key, so a requeued job is limited like the original.
ALTER TABLE webhook_worker.dead_letter_jobs ADD COLUMN concurrency_key text;

CREATE OR REPLACE FUNCTION webhook_worker.requeue_dead_letter(dead_letter_id bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    d webhook_worker.dead_letter_jobs;
    new_id bigint;
BEGIN
    SELECT * INTO d FROM webhook_worker.dead_letter_jobs WHERE id = dead_letter_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dead letter % does not exist', dead_letter_id USING ERRCODE = 'no_data_found';
    END IF;
    IF d.requeued_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was already requeued as job %', dead_letter_id, d.requeued_job_id
            USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO webhook_worker.jobs (kind, payload, priority, max_attempts, unique_key, concurrency_key)
    VALUES (d.kind, d.payload, d.priority, d.max_attempts, d.unique_key, d.concurrency_key)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        RAISE EXCEPTION 'a job with unique key % is already queued', d.unique_key USING ERRCODE = 'unique_violation';
    END IF;
    UPDATE webhook_worker.dead_letter_jobs SET requeued_at = now(), requeued_job_id = new_id WHERE id = dead_letter_id;
    RETURN new_id;
END;
$$;

-- As in 001, plus the key on the dead letters it writes.
CREATE OR REPLACE FUNCTION webhook_worker.reap_expired_leases(default_max_attempts integer, batch integer DEFAULT 500)
RETURNS TABLE (kind text, jobs integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH expired AS (
        SELECT id, locked_by, attempted_at
        FROM webhook_worker.jobs
        WHERE state = 'running' AND locked_until < now()
        ORDER BY locked_until
        LIMIT batch
        FOR UPDATE SKIP LOCKED
    ), dead AS (
        DELETE FROM webhook_worker.jobs j
        USING expired e
        WHERE j.id = e.id AND j.attempt >= coalesce(j.max_attempts, default_max_attempts)
        RETURNING j.*, e.locked_by AS lost_by, e.attempted_at AS lost_started
    ), dead_rows AS (
        INSERT INTO webhook_worker.dead_letter_jobs
            (job_id, kind, payload, priority, attempts, max_attempts, reason, last_error, unique_key, created_at,
             concurrency_key)
        SELECT id, kind, payload, priority, attempt, coalesce(max_attempts, default_max_attempts),
               'attempts_exhausted', 'lease expired on the last attempt (worker ' || lost_by || ' stopped renewing it)',
               unique_key, created_at, concurrency_key
        FROM dead
    ), back AS (
        UPDATE webhook_worker.jobs j
        SET state = 'available', locked_by = NULL, locked_until = NULL, run_at = now(),
            last_error = 'lease expired (worker ' || e.locked_by || ' stopped renewing it)'
        FROM expired e
        WHERE j.id = e.id AND j.attempt < coalesce(j.max_attempts, default_max_attempts)
        RETURNING j.id, j.kind, j.attempt, e.locked_by AS lost_by, e.attempted_at AS lost_started
    ), attempts AS (
        INSERT INTO webhook_worker.job_attempts (job_id, kind, attempt, worker_id, started_at, outcome, error)
        SELECT id, kind, attempt, lost_by, coalesce(lost_started, now()), 'lost', 'lease expired'
        FROM back
        UNION ALL
        SELECT id, kind, attempt, lost_by, coalesce(lost_started, now()), 'lost', 'lease expired'
        FROM dead
        RETURNING job_attempts.kind
    )
    SELECT a.kind, count(*)::integer FROM attempts a GROUP BY a.kind;
    IF FOUND THEN
        PERFORM pg_notify('webhook_worker_jobs', '');
    END IF;
END;
$$;

-- For DBAs: per kind and key, the jobs running and waiting now.
CREATE VIEW webhook_worker.concurrency_key_depth AS
SELECT kind, concurrency_key,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE state = 'available' AND run_at <= now()) AS waiting,
       count(*) FILTER (WHERE state = 'available' AND run_at > now()) AS scheduled,
       min(run_at) FILTER (WHERE state = 'available' AND run_at <= now()) AS oldest_run_at
FROM webhook_worker.jobs
WHERE concurrency_key IS NOT NULL
GROUP BY kind, concurrency_key;
