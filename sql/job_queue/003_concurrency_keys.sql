-- Concurrency keys: a job may carry a key (an endpoint, a tenant), and a worker may cap how many
-- jobs of a kind run at once per key, summed over every replica.
--
-- Why this shape. graphile-worker locks a job_queues row per named queue (SKIP LOCKED): exact, but
-- only a mutex (limit 1), and its claim lists every unlocked queue. Hatchet keeps a slot row per
-- queued task; under an advisory lock, a scheduler pass fills slots key by key, visiting every key
-- of a strategy. River Pro and Oban Pro (closed; by their docs) coordinate global limits through
-- producer records and skip jobs that would exceed a partition's limit. None bounds a claim's cost
-- by the work it returns when thousands of keys sit idle or full. Here a claim walks a small table,
-- one row per key and priority that may have work, by its first waiting job (the "head"): heads in
-- the future are never read, a full key is parked (head beyond any date) until one of its running
-- jobs ends, and a backlog is never read past the jobs taken. Each row is locked SKIP LOCKED and its
-- key with an advisory lock, then running jobs are counted in a new statement (a new snapshot):
-- claims for a key are serialized and each sees the others' commits, so the limit is exact. A head
-- is a lower bound that writers never touch (no lock on a busy key, any isolation level): they
-- append wake-ups that claims fold in. Running jobs are counted, never kept in a counter, so
-- nothing can drift; the bookkeeping can be rebuilt from jobs.
--
-- Unkeyed jobs keep today's claim: an ordered walk of an index that holds only them, stopping
-- after LIMIT rows. Keys are scoped by kind: limits are set per kind, and the same key on another
-- kind is another partition. Every replica must pass the same limits.

ALTER TABLE {{schema}}.jobs
    ADD COLUMN concurrency_key text CHECK (concurrency_key <> '' AND length(concurrency_key) <= 500);

COMMENT ON COLUMN {{schema}}.jobs.concurrency_key IS
    'Optional. Jobs of one kind with the same key share that kind''s per-key limit (when the worker sets one).';

-- The unkeyed claim walks this index in order and stops after LIMIT rows, as the claim walked
-- jobs_claim_idx before. A keyed backlog is not in it, so it cannot slow the unkeyed walk.
CREATE INDEX jobs_claim_unkeyed_idx ON {{schema}}.jobs (priority, run_at, id)
    WHERE state = 'available' AND concurrency_key IS NULL;
-- A key's waiting jobs in claim order: the claim takes the first few, and heads are read from it.
CREATE INDEX jobs_claim_keyed_idx ON {{schema}}.jobs (kind, concurrency_key, priority, run_at, id)
    WHERE state = 'available' AND concurrency_key IS NOT NULL;
-- Counting a key's running jobs reads at most the limit's worth of entries.
CREATE INDEX jobs_running_key_idx ON {{schema}}.jobs (kind, concurrency_key)
    WHERE state = 'running' AND concurrency_key IS NOT NULL;
-- jobs_claim_idx stays for replicas still running the previous claim during a rolling upgrade;
-- a later migration can drop it once every replica calls claim_jobs.

-- One row per (kind, key, priority) that may have waiting jobs. head_* is a lower bound of the
-- first of them in (run_at, id) order: it may be too early (the job was deleted or moved later;
-- the next claim that visits the row corrects it or deletes it) but never later than a waiting
-- job, because whatever makes a job wait appends a wake-up that lowers the head. Heads are per
-- priority so that a key whose first job in claim order is scheduled later still shows its
-- runnable jobs of a later priority. head_run_at = 'infinity': parked, the key was full when last
-- looked at; '-infinity': one of its running jobs ended since, look again.
CREATE TABLE {{schema}}.concurrency_keys (
    kind             text        NOT NULL,
    concurrency_key  text        NOT NULL,
    priority         smallint    NOT NULL,
    head_run_at      timestamptz NOT NULL,
    head_id          bigint      NOT NULL,
    PRIMARY KEY (kind, concurrency_key, priority)
);
COMMENT ON TABLE {{schema}}.concurrency_keys IS
    'Claim bookkeeping: keys that may have waiting jobs, by their first one per priority (infinity: parked while full). Rebuild with {{schema}}.rebuild_concurrency_keys().';
-- The claim reads, per kind and priority, the keys whose head is due, in head order.
CREATE INDEX concurrency_keys_head_idx ON {{schema}}.concurrency_keys (kind, priority, head_run_at, head_id);

-- Appended by the triggers below; every claim deletes up to 1000 and folds them into heads. A row
-- with a priority: a keyed job became waiting (inserted, retried, released, reaped) or moved
-- earlier; it lowers that head. A row without: a running job of the key stopped running; it lowers
-- every row of the key to '-infinity', unparking it. Appending never waits on a lock, and a
-- wake-up commits with its change, so whatever a claim could not see yet arrives as a wake-up.
CREATE TABLE {{schema}}.concurrency_key_wakeups (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text        NOT NULL,
    concurrency_key  text        NOT NULL,
    priority         smallint,
    run_at           timestamptz,
    job_id           bigint
);
COMMENT ON TABLE {{schema}}.concurrency_key_wakeups IS
    'Claim bookkeeping: keyed jobs that became waiting, or stopped running, since the last claims.';

-- Both tables are small and churn with every claim.
ALTER TABLE {{schema}}.concurrency_keys SET (
    autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE {{schema}}.concurrency_key_wakeups SET (
    autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.0, autovacuum_vacuum_insert_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0);

-- One wake-up per key and priority per inserting statement: a bulk insert of a backlog costs one row.
CREATE FUNCTION {{schema}}.wake_inserted_concurrency_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {{schema}}.concurrency_key_wakeups (kind, concurrency_key, priority, run_at, job_id)
    SELECT DISTINCT ON (kind, concurrency_key, priority) kind, concurrency_key, priority, run_at, id
    FROM inserted_jobs
    WHERE state = 'available' AND concurrency_key IS NOT NULL
    ORDER BY kind, concurrency_key, priority, run_at, id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_wake_concurrency_keys_insert
    AFTER INSERT ON {{schema}}.jobs
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.wake_inserted_concurrency_keys();

-- Retries, releases, reaped leases (a job waits again, and its key has one running job less), and a
-- DBA moving a job earlier or changing its key. The WHEN clause keeps the claim, lease renewals
-- and unkeyed jobs free of any call.
CREATE FUNCTION {{schema}}.wake_updated_concurrency_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'available' AND NEW.concurrency_key IS NOT NULL THEN
        INSERT INTO {{schema}}.concurrency_key_wakeups (kind, concurrency_key, priority, run_at, job_id)
        VALUES (NEW.kind, NEW.concurrency_key, NEW.priority, NEW.run_at, NEW.id);
    END IF;
    IF OLD.state = 'running' AND OLD.concurrency_key IS NOT NULL THEN
        INSERT INTO {{schema}}.concurrency_key_wakeups (kind, concurrency_key) VALUES (OLD.kind, OLD.concurrency_key);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_wake_concurrency_keys_update
    AFTER UPDATE ON {{schema}}.jobs
    FOR EACH ROW
    WHEN ((NEW.state = 'available' AND NEW.concurrency_key IS NOT NULL
           AND (OLD.state <> 'available' OR OLD.kind <> NEW.kind OR OLD.priority <> NEW.priority
                OR OLD.concurrency_key IS DISTINCT FROM NEW.concurrency_key OR NEW.run_at < OLD.run_at))
          OR (OLD.state = 'running' AND OLD.concurrency_key IS NOT NULL
              AND (NEW.state <> 'running' OR OLD.kind <> NEW.kind OR OLD.concurrency_key IS DISTINCT FROM NEW.concurrency_key)))
    EXECUTE FUNCTION {{schema}}.wake_updated_concurrency_key();

-- Completed, cancelled, dead-lettered, or deleted by a DBA while running: the key has room again.
CREATE FUNCTION {{schema}}.wake_deleted_concurrency_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {{schema}}.concurrency_key_wakeups (kind, concurrency_key) VALUES (OLD.kind, OLD.concurrency_key);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_wake_concurrency_keys_delete
    AFTER DELETE ON {{schema}}.jobs
    FOR EACH ROW
    WHEN (OLD.state = 'running' AND OLD.concurrency_key IS NOT NULL)
    EXECUTE FUNCTION {{schema}}.wake_deleted_concurrency_key();

-- A job's place in claim order; composite values compare field by field.
CREATE TYPE {{schema}}.claim_position AS (priority smallint, run_at timestamptz, id bigint);

-- Claims up to `batch` runnable jobs of `kinds` in (priority, run_at, id) order, among what the
-- limits allow: a keyed job of a kind in `keyed_kinds` is taken only while fewer than the matching
-- `key_limits` entry of its kind and key are running. Keyed jobs of other kinds, and jobs without
-- a key, have no limit. One call is one claim: SELECT * FROM {{schema}}.claim_jobs(...).
--
-- 1. Fold committed wake-ups into the heads (at most 1000 a claim; others are left for the next).
-- 2. Unkeyed jobs: the ordered walk of jobs_claim_unkeyed_idx, FOR UPDATE SKIP LOCKED, LIMIT batch.
-- 3. Keyed jobs: per kind and priority, the key rows whose head is due, in head order, each locked
--    with SKIP LOCKED; then the key itself, with a transaction advisory lock (try, never wait),
--    so one claim at a time decides for a key across its priorities. In new statements (new
--    snapshots, which see every claim committed for the key before the lock was taken) its
--    running jobs are counted and its first (limit - running - taken by this claim) runnable jobs
--    of that priority locked. The walk stops at the first row whose head comes after the
--    batch-th candidate: a key's backlog is read only as far as the jobs taken, and rows whose
--    head is in the future, or parked, are never read.
-- 4. The first `batch` candidates in order are leased and returned.
-- 5. The rows visited move to their next waiting job, are parked if their key is now full (and had
--    a limit above 0), or are deleted if nothing waits.
-- Claims wait for no lock except in step 1, for key rows another claim holds, taken in key order
-- by one statement; a claim past step 1 never waits, so claims cannot deadlock.
CREATE FUNCTION {{schema}}.claim_jobs(
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
-- The few sorts left (of candidates, in memory) then cost "disabled", which would start the JIT
-- compiler (100 ms a call): it is off. Generic plans: the statements run once per key visited,
-- and planning each call cost more than running it; the generic plans use the indexes above.
SET enable_sort = off
SET enable_bitmapscan = off
-- Nor scans of the whole queue: plans here are generic and cached per connection, and a plan made
-- while the statistics said "empty table" must not stay a sequential scan once there is a backlog.
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    -- Jobs locked so far.
    cands {{schema}}.claim_position[];
    added {{schema}}.claim_position[];
    -- Once there are `batch` candidates, the batch-th at the last count: nothing after it can be
    -- claimed. Recounted only when candidates reach twice `batch`, so it may be late, never early.
    cut {{schema}}.claim_position;
    k text;
    lim integer;
    p smallint;
    keys_cur refcursor;
    h record;
    key_name text;
    pos integer;
    running integer;
    allowance integer;
    -- Keys this claim decided for, and the jobs it took of each.
    seen_keys text[] := '{}';
    seen_taken integer[] := '{}';
    -- Rows visited, for step 5, with their kind's limit.
    t_kinds text[] := '{}';
    t_keys text[] := '{}';
    t_pris smallint[] := '{}';
    t_lims integer[] := '{}';
BEGIN
    IF batch IS NULL OR batch < 1 OR kinds IS NULL THEN
        RETURN;
    END IF;
    IF cardinality(coalesce(keyed_kinds, '{}')) <> cardinality(coalesce(key_limits, '{}')) THEN
        RAISE EXCEPTION 'keyed_kinds and key_limits differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Counting a key's running jobs must see claims committed after this transaction began.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'claim_jobs needs READ COMMITTED, not %', current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;

    -- 0. The common case, nothing keyed due and no wake-up to fold in: one statement, the claim
    --    as it was before keys existed (about half the cost of the general path below).
    IF NOT EXISTS (SELECT 1 FROM {{schema}}.concurrency_key_wakeups)
       AND NOT EXISTS (SELECT 1 FROM {{schema}}.concurrency_keys c
                       WHERE c.kind = ANY(kinds) AND c.head_run_at <= now()) THEN
        -- `id = ANY (ARRAY(...))`, not a join: the plan is generic (the batch size unknown), and
        -- a join was planned as a hash over the whole queue once statistics showed a backlog.
        RETURN QUERY
        UPDATE {{schema}}.jobs j
        SET state = 'running', attempt = j.attempt + 1, locked_by = worker,
            locked_until = now() + lease, attempted_at = now()
        WHERE j.id = ANY (ARRAY(
            SELECT p.id FROM {{schema}}.jobs p
            WHERE p.state = 'available' AND p.run_at <= now() AND p.kind = ANY(kinds) AND p.concurrency_key IS NULL
            ORDER BY p.priority, p.run_at, p.id
            LIMIT batch
            FOR UPDATE SKIP LOCKED))
        RETURNING j.id, j.kind, j.payload, j.priority, j.attempt, j.max_attempts, j.released, j.created_at,
                  j.run_at, j.concurrency_key;
        RETURN;
    END IF;

    -- 1. A released slot proposes '-infinity' for every row of its key visible now; a row parked
    --    since by a claim still holding it is locked, so the upsert waits and then unparks it.
    WITH w AS (
        DELETE FROM {{schema}}.concurrency_key_wakeups w
        WHERE w.id IN (SELECT w2.id FROM {{schema}}.concurrency_key_wakeups w2
                       ORDER BY w2.id LIMIT 1000 FOR UPDATE SKIP LOCKED)
        RETURNING w.kind, w.concurrency_key, w.priority, w.run_at, w.job_id
    ), proposed AS (
        SELECT w.kind, w.concurrency_key, w.priority, w.run_at, w.job_id FROM w WHERE w.priority IS NOT NULL
        UNION ALL
        SELECT c.kind, c.concurrency_key, c.priority, '-infinity'::timestamptz, 0::bigint
        FROM {{schema}}.concurrency_keys c
        WHERE (c.kind, c.concurrency_key) IN (SELECT w.kind, w.concurrency_key FROM w WHERE w.priority IS NULL)
    ), firsts AS (
        SELECT DISTINCT ON (o.kind, o.concurrency_key, o.priority)
               o.kind, o.concurrency_key, o.priority, o.run_at, o.job_id
        FROM proposed o
        ORDER BY o.kind, o.concurrency_key, o.priority, o.run_at, o.job_id
    )
    INSERT INTO {{schema}}.concurrency_keys AS c (kind, concurrency_key, priority, head_run_at, head_id)
    SELECT f.kind, f.concurrency_key, f.priority, f.run_at, f.job_id FROM firsts f
    ORDER BY f.kind, f.concurrency_key, f.priority
    ON CONFLICT ON CONSTRAINT concurrency_keys_pkey DO UPDATE
    SET head_run_at = excluded.head_run_at, head_id = excluded.head_id
    WHERE (excluded.head_run_at, excluded.head_id) < (c.head_run_at, c.head_id);

    -- 2.
    cands := ARRAY(
        SELECT ROW(j.priority, j.run_at, j.id)::{{schema}}.claim_position
        FROM {{schema}}.jobs j
        WHERE j.state = 'available' AND j.run_at <= now() AND j.kind = ANY(kinds) AND j.concurrency_key IS NULL
        ORDER BY j.priority, j.run_at, j.id
        LIMIT batch
        FOR UPDATE SKIP LOCKED);
    IF cardinality(cands) >= batch THEN
        cut := cands[batch];
    END IF;

    -- 3.
    FOR k IN SELECT DISTINCT x FROM unnest(kinds) AS x WHERE x IS NOT NULL LOOP
        lim := key_limits[array_position(keyed_kinds, k)];
        SELECT min(c.priority) INTO p FROM {{schema}}.concurrency_keys c WHERE c.kind = k;
        WHILE p IS NOT NULL AND (cut IS NULL OR p <= cut.priority) LOOP
            -- FETCH takes one row at a time: a FOR loop would lock ten rows ahead of need.
            OPEN keys_cur FOR
                SELECT c.concurrency_key, c.head_run_at, c.head_id
                FROM {{schema}}.concurrency_keys c
                WHERE c.kind = k AND c.priority = p AND c.head_run_at <= now()
                ORDER BY c.head_run_at, c.head_id
                FOR UPDATE SKIP LOCKED;
            LOOP
                FETCH keys_cur INTO h;
                EXIT WHEN NOT FOUND;
                EXIT WHEN cut IS NOT NULL AND ROW(p, h.head_run_at, h.head_id)::{{schema}}.claim_position >= cut;
                key_name := k || E'\x1f' || h.concurrency_key;
                -- Another claim is deciding for this key (at another priority): skip it.
                CONTINUE WHEN NOT pg_try_advisory_xact_lock(1466458907, hashtext(key_name));
                IF lim IS NULL THEN
                    running := 0;
                ELSE
                    SELECT count(*) INTO running FROM (
                        SELECT 1 FROM {{schema}}.jobs j
                        WHERE j.kind = k AND j.concurrency_key = h.concurrency_key AND j.state = 'running'
                        LIMIT greatest(lim, 0)) r;
                END IF;
                pos := array_position(seen_keys, key_name);
                IF pos IS NULL THEN
                    seen_keys := seen_keys || key_name;
                    seen_taken := seen_taken || 0;
                    pos := cardinality(seen_keys);
                END IF;
                t_kinds := t_kinds || k;
                t_keys := t_keys || h.concurrency_key;
                t_pris := t_pris || p;
                t_lims := t_lims || lim;
                allowance := CASE WHEN lim IS NULL THEN batch ELSE least(lim - running - seen_taken[pos], batch) END;
                CONTINUE WHEN allowance <= 0;
                added := ARRAY(
                    SELECT ROW(j.priority, j.run_at, j.id)::{{schema}}.claim_position
                    FROM {{schema}}.jobs j
                    WHERE j.kind = k AND j.concurrency_key = h.concurrency_key AND j.priority = p
                      AND j.state = 'available' AND j.run_at <= now()
                      AND (cut IS NULL OR p < cut.priority OR (j.run_at, j.id) < (cut.run_at, cut.id))
                    ORDER BY j.run_at, j.id
                    LIMIT allowance
                    FOR UPDATE SKIP LOCKED);
                seen_taken[pos] := seen_taken[pos] + cardinality(added);
                IF cardinality(added) > 0 THEN
                    cands := cands || added;
                    IF cardinality(cands) >= batch * (CASE WHEN cut IS NULL THEN 1 ELSE 2 END) THEN
                        -- Keep the first `batch` (the others stay locked until commit, unused).
                        cands := ARRAY(SELECT ROW(u.priority, u.run_at, u.id)::{{schema}}.claim_position
                                       FROM unnest(cands) AS u ORDER BY u.priority, u.run_at, u.id LIMIT batch);
                        cut := cands[batch];
                    END IF;
                END IF;
            END LOOP;
            CLOSE keys_cur;
            SELECT min(c.priority) INTO p FROM {{schema}}.concurrency_keys c WHERE c.kind = k AND c.priority > p;
        END LOOP;
    END LOOP;

    -- 4. By primary key, whatever the table's statistics say (a join could be planned as a scan
    --    of the whole queue when the statistics predate the backlog).
    RETURN QUERY
    UPDATE {{schema}}.jobs j
    SET state = 'running', attempt = j.attempt + 1, locked_by = worker,
        locked_until = now() + lease, attempted_at = now()
    WHERE j.id = ANY (ARRAY(SELECT u.id FROM unnest(cands) AS u ORDER BY u.priority, u.run_at, u.id LIMIT batch))
    RETURNING j.id, j.kind, j.payload, j.priority, j.attempt, j.max_attempts, j.released, j.created_at,
              j.run_at, j.concurrency_key;

    -- 5. These rows are locked by this claim, and the jobs it just took are running now. A key
    --    is full if, counted again (a new snapshot: this claim's jobs and every committed one), it
    --    has `limit` running jobs; it is parked only if that limit is above 0, so that one of
    --    them must end, and wake it, before anything more could run.
    IF cardinality(t_kinds) > 0 THEN
        UPDATE {{schema}}.concurrency_keys c
        SET head_run_at = CASE WHEN t.lim > 0 AND r.running >= t.lim THEN 'infinity' ELSE n.run_at END,
            head_id = n.id
        FROM unnest(t_kinds, t_keys, t_pris, t_lims) AS t(kind, concurrency_key, priority, lim)
        CROSS JOIN LATERAL (
            SELECT j.run_at, j.id FROM {{schema}}.jobs j
            WHERE j.kind = t.kind AND j.concurrency_key = t.concurrency_key AND j.priority = t.priority
              AND j.state = 'available'
            ORDER BY j.run_at, j.id
            LIMIT 1) n
        CROSS JOIN LATERAL (
            SELECT count(*) AS running FROM (
                SELECT 1 FROM {{schema}}.jobs j
                WHERE j.kind = t.kind AND j.concurrency_key = t.concurrency_key AND j.state = 'running'
                LIMIT greatest(t.lim, 0)) x) r
        WHERE c.kind = t.kind AND c.concurrency_key = t.concurrency_key AND c.priority = t.priority;
        DELETE FROM {{schema}}.concurrency_keys c
        USING unnest(t_kinds, t_keys, t_pris) AS t(kind, concurrency_key, priority)
        WHERE c.kind = t.kind AND c.concurrency_key = t.concurrency_key AND c.priority = t.priority
          AND NOT EXISTS (SELECT 1 FROM {{schema}}.jobs j
                          WHERE j.kind = t.kind AND j.concurrency_key = t.concurrency_key
                            AND j.priority = t.priority AND j.state = 'available');
    END IF;
END;
$$;

COMMENT ON FUNCTION {{schema}}.claim_jobs(text[], text[], integer[], integer, text, interval) IS
    'The claim. kinds: kinds this replica runs; keyed_kinds/key_limits: per-key limits by kind (same length); batch: free slots; worker: locked_by; lease: locked_until - now().';

-- For DBAs, after restoring or truncating the bookkeeping, or running with triggers disabled:
-- forgets every key row and wakes every key that has waiting jobs, in one transaction, so the next
-- claims rebuild the heads from jobs. Reads every keyed waiting job once. Returns the wake-ups.
CREATE FUNCTION {{schema}}.rebuild_concurrency_keys() RETURNS integer
LANGUAGE sql AS $$
    DELETE FROM {{schema}}.concurrency_keys;
    WITH w AS (
        INSERT INTO {{schema}}.concurrency_key_wakeups (kind, concurrency_key, priority, run_at, job_id)
        SELECT DISTINCT ON (kind, concurrency_key, priority) kind, concurrency_key, priority, run_at, id
        FROM {{schema}}.jobs
        WHERE state = 'available' AND concurrency_key IS NOT NULL
        ORDER BY kind, concurrency_key, priority, run_at, id
        RETURNING 1
    )
    SELECT count(*)::integer FROM w;
$$;

-- enqueue() gains the key as its last parameter; calls without it are unchanged.
DROP FUNCTION {{schema}}.enqueue(text, jsonb, timestamptz, integer, integer, text);
CREATE FUNCTION {{schema}}.enqueue(
    kind text,
    payload jsonb DEFAULT '{}'::jsonb,
    run_at timestamptz DEFAULT now(),
    priority integer DEFAULT 0,
    max_attempts integer DEFAULT NULL,
    unique_key text DEFAULT NULL,
    concurrency_key text DEFAULT NULL
) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO {{schema}}.jobs (kind, payload, run_at, priority, max_attempts, unique_key, concurrency_key)
    VALUES (enqueue.kind, enqueue.payload, enqueue.run_at, enqueue.priority::smallint, enqueue.max_attempts,
            enqueue.unique_key, enqueue.concurrency_key)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id;
$$;

-- A dead letter keeps its key, so a requeued job is limited like the original. Requeueing also
-- keeps the attempt limit it died with (its own, or the retry policy's at the time) instead of
-- whatever the policy says now, and skips a unique key that is queued again meanwhile.
ALTER TABLE {{schema}}.dead_letter_jobs ADD COLUMN concurrency_key text;

CREATE OR REPLACE FUNCTION {{schema}}.requeue_dead_letter(dead_letter_id bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    d {{schema}}.dead_letter_jobs;
    new_id bigint;
BEGIN
    SELECT * INTO d FROM {{schema}}.dead_letter_jobs WHERE id = dead_letter_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dead letter % does not exist', dead_letter_id USING ERRCODE = 'no_data_found';
    END IF;
    IF d.requeued_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was already requeued as job %', dead_letter_id, d.requeued_job_id
            USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO {{schema}}.jobs (kind, payload, priority, max_attempts, unique_key, concurrency_key)
    VALUES (d.kind, d.payload, d.priority, d.max_attempts, d.unique_key, d.concurrency_key)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        RAISE EXCEPTION 'a job with unique key % is already queued', d.unique_key USING ERRCODE = 'unique_violation';
    END IF;
    UPDATE {{schema}}.dead_letter_jobs SET requeued_at = now(), requeued_job_id = new_id WHERE id = dead_letter_id;
    RETURN new_id;
END;
$$;

-- As in 001, plus the key on the dead letters it writes.
CREATE OR REPLACE FUNCTION {{schema}}.reap_expired_leases(default_max_attempts integer, batch integer DEFAULT 500)
RETURNS TABLE (kind text, jobs integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH expired AS (
        SELECT id, locked_by, attempted_at
        FROM {{schema}}.jobs
        WHERE state = 'running' AND locked_until < now()
        ORDER BY locked_until
        LIMIT batch
        FOR UPDATE SKIP LOCKED
    ), dead AS (
        DELETE FROM {{schema}}.jobs j
        USING expired e
        WHERE j.id = e.id AND j.attempt >= coalesce(j.max_attempts, default_max_attempts)
        RETURNING j.*, e.locked_by AS lost_by, e.attempted_at AS lost_started
    ), dead_rows AS (
        INSERT INTO {{schema}}.dead_letter_jobs
            (job_id, kind, payload, priority, attempts, max_attempts, reason, last_error, unique_key, created_at,
             concurrency_key)
        SELECT id, kind, payload, priority, attempt, coalesce(max_attempts, default_max_attempts),
               'attempts_exhausted', 'lease expired on the last attempt (worker ' || lost_by || ' stopped renewing it)',
               unique_key, created_at, concurrency_key
        FROM dead
    ), back AS (
        UPDATE {{schema}}.jobs j
        SET state = 'available', locked_by = NULL, locked_until = NULL, run_at = now(),
            last_error = 'lease expired (worker ' || e.locked_by || ' stopped renewing it)'
        FROM expired e
        WHERE j.id = e.id AND j.attempt < coalesce(j.max_attempts, default_max_attempts)
        RETURNING j.id, j.kind, j.attempt, e.locked_by AS lost_by, e.attempted_at AS lost_started
    ), attempts AS (
        INSERT INTO {{schema}}.job_attempts (job_id, kind, attempt, worker_id, started_at, outcome, error)
        SELECT id, kind, attempt, lost_by, coalesce(lost_started, now()), 'lost', 'lease expired'
        FROM back
        UNION ALL
        SELECT id, kind, attempt, lost_by, coalesce(lost_started, now()), 'lost', 'lease expired'
        FROM dead
        RETURNING job_attempts.kind
    )
    SELECT a.kind, count(*)::integer FROM attempts a GROUP BY a.kind;
    IF FOUND THEN
        PERFORM pg_notify('{{channel}}', '');
    END IF;
END;
$$;

-- For DBAs: per kind and key, the jobs running and waiting now.
CREATE VIEW {{schema}}.concurrency_key_depth AS
SELECT kind, concurrency_key,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE state = 'available' AND run_at <= now()) AS waiting,
       count(*) FILTER (WHERE state = 'available' AND run_at > now()) AS scheduled,
       min(run_at) FILTER (WHERE state = 'available' AND run_at <= now()) AS oldest_run_at
FROM {{schema}}.jobs
WHERE concurrency_key IS NOT NULL
GROUP BY kind, concurrency_key;
