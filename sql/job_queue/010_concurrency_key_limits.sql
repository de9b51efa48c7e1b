-- Per-key limits held in the database (issue 22). Until now every key of a kind ran under the
-- one limit the replica passes for its kind (`key_limits`). A program may now give a single key
-- a limit of its own (webhook delivery gives each endpoint its adaptive or operator limit):
-- `concurrency_key_limits` holds it, and the claim and the reconciler use it instead of the
-- kind's. The kind's limit stays the default for keys without a row.
--
-- The claim reads a key's limit after taking the key's advisory lock, in a statement of its own
-- (a new snapshot), exactly where it counts the key's running jobs, so the parking rule is
-- unchanged: a key is parked only when the limit it was read under is full, and the parked row
-- remembers that limit. Changing a limit goes through set_concurrency_key_limit(), which, when
-- the limit is raised or removed, appends a "slot freed" wake-up for the key in its own
-- transaction: the next claim then re-proposes the key's first waiting job at each priority,
-- which unparks a parked row (waiting, as a released slot's wake-up does, for a claim still
-- holding it; see 008). A lowered limit takes effect as running jobs end: nothing running is
-- stopped, and no new job starts while the key runs as many as its new limit.

CREATE TABLE {{schema}}.concurrency_key_limits (
    kind            text        NOT NULL,
    concurrency_key text        NOT NULL,
    -- 0 holds the key's jobs (none starts); NULL is never stored: no row means the kind's limit.
    max_running     integer     NOT NULL CHECK (max_running >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, concurrency_key)
);
COMMENT ON TABLE {{schema}}.concurrency_key_limits IS
    'Per-key limits that override the kind''s (the worker''s key_limits). Change them with set_concurrency_key_limit().';

-- Sets (or, with NULL, removes) one key's limit; returns the limit it had (NULL: none of its
-- own). Raising or removing it wakes the key, so that a key parked under the old limit runs
-- again without waiting for one of its jobs to end.
CREATE FUNCTION {{schema}}.set_concurrency_key_limit(
    kind text, concurrency_key text, max_running integer
) RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    old integer;
BEGIN
    IF max_running IS NOT NULL AND max_running < 0 THEN
        RAISE EXCEPTION 'a concurrency key''s limit must be 0 or more, not %', max_running
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT l.max_running INTO old FROM {{schema}}.concurrency_key_limits l
    WHERE l.kind = set_concurrency_key_limit.kind AND l.concurrency_key = set_concurrency_key_limit.concurrency_key
    FOR UPDATE;
    IF max_running IS NULL THEN
        DELETE FROM {{schema}}.concurrency_key_limits l
        WHERE l.kind = set_concurrency_key_limit.kind
          AND l.concurrency_key = set_concurrency_key_limit.concurrency_key;
    ELSIF old IS DISTINCT FROM max_running THEN
        INSERT INTO {{schema}}.concurrency_key_limits AS l (kind, concurrency_key, max_running)
        VALUES (set_concurrency_key_limit.kind, set_concurrency_key_limit.concurrency_key, max_running)
        ON CONFLICT ON CONSTRAINT concurrency_key_limits_pkey DO UPDATE
        SET max_running = excluded.max_running, updated_at = now();
    END IF;
    IF old IS NULL OR max_running IS NULL OR max_running > old THEN
        INSERT INTO {{schema}}.concurrency_key_wakeups (kind, concurrency_key)
        VALUES (set_concurrency_key_limit.kind, set_concurrency_key_limit.concurrency_key);
        PERFORM pg_notify('{{channel}}', '');
    END IF;
    RETURN old;
END;
$$;

-- The claim of 008 with one change in step 3: `lim` is the key's own limit when it has one.
CREATE OR REPLACE FUNCTION {{schema}}.claim_jobs(
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
    -- The kind's limit, as this replica runs it; a key's own limit, if it has one, wins.
    kind_lim integer;
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
    -- Rows visited, for step 5, with their key's limit.
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

    -- 1. Wake-ups become heads. A job that became waiting proposes itself for its key and
    --    priority. A released slot proposes, for every priority at which its key has a waiting
    --    job (read from jobs, not from the key rows), that priority's first job, and for every
    --    visible row of the key with none, '-infinity' (the row is visited and deleted). Reading
    --    the priorities from jobs is what makes a wake-up reach a row it cannot see: a row that a
    --    claim still open inserted and then parked as full. Proposing for it conflicts with that
    --    insert, so the upsert waits for the claim's commit and then unparks the row; a wake-up
    --    that only looked at visible rows was consumed with nothing to update, and the key stayed
    --    parked with free slots until a new job arrived for it (issue 20). A visible row parked by
    --    a claim still holding it is locked, so the upsert waits for it the same way.
    WITH w AS (
        DELETE FROM {{schema}}.concurrency_key_wakeups w
        WHERE w.id IN (SELECT w2.id FROM {{schema}}.concurrency_key_wakeups w2
                       ORDER BY w2.id LIMIT 1000 FOR UPDATE SKIP LOCKED)
        RETURNING w.kind, w.concurrency_key, w.priority, w.run_at, w.job_id
    ), freed AS (
        SELECT DISTINCT w.kind, w.concurrency_key FROM w WHERE w.priority IS NULL
    ), proposed AS (
        SELECT w.kind, w.concurrency_key, w.priority, w.run_at, w.job_id FROM w WHERE w.priority IS NOT NULL
        UNION ALL
        SELECT c.kind, c.concurrency_key, c.priority, '-infinity'::timestamptz, 0::bigint
        FROM {{schema}}.concurrency_keys c
        WHERE (c.kind, c.concurrency_key) IN (SELECT f.kind, f.concurrency_key FROM freed f)
          AND NOT EXISTS (SELECT 1 FROM {{schema}}.jobs j
                          WHERE j.kind = c.kind AND j.concurrency_key = c.concurrency_key
                            AND j.priority = c.priority AND j.state = 'available')
        UNION ALL
        SELECT f.kind, f.concurrency_key, n.priority, n.run_at, n.id
        FROM freed f
        CROSS JOIN LATERAL {{schema}}.first_waiting_per_priority(f.kind, f.concurrency_key) n
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
        kind_lim := key_limits[array_position(keyed_kinds, k)];
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
                -- The key's own limit, read under the key's lock in a new snapshot (see the header).
                SELECT l.max_running INTO lim FROM {{schema}}.concurrency_key_limits l
                WHERE l.kind = k AND l.concurrency_key = h.concurrency_key;
                IF NOT FOUND THEN
                    lim := kind_lim;
                END IF;
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
                IF cut IS NULL OR p < cut.priority THEN
                    added := ARRAY(
                        SELECT ROW(j.priority, j.run_at, j.id)::{{schema}}.claim_position
                        FROM {{schema}}.jobs j
                        WHERE j.kind = k AND j.concurrency_key = h.concurrency_key AND j.priority = p
                          AND j.state = 'available' AND j.run_at <= now()
                        ORDER BY j.run_at, j.id
                        LIMIT allowance
                        FOR UPDATE SKIP LOCKED);
                ELSE
                    added := ARRAY(
                        SELECT ROW(j.priority, j.run_at, j.id)::{{schema}}.claim_position
                        FROM {{schema}}.jobs j
                        WHERE j.kind = k AND j.concurrency_key = h.concurrency_key AND j.priority = p
                          AND j.state = 'available' AND j.run_at <= now()
                          AND (j.run_at, j.id) < (cut.run_at, cut.id)
                        ORDER BY j.run_at, j.id
                        LIMIT allowance
                        FOR UPDATE SKIP LOCKED);
                END IF;
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
    --    them must end, and wake it, before anything more could run. A parked row keeps the limit
    --    it was parked under as its head_id, so that the reconciler can unpark it when a replica
    --    runs with a higher limit (until then, the end of any of its running jobs unparks it).
    --    One statement moves the rows that still have waiting jobs and deletes the others.
    IF cardinality(t_kinds) > 0 THEN
        WITH t AS (
            SELECT t.kind, t.concurrency_key, t.priority, t.lim, n.run_at, n.id, r.running
            FROM unnest(t_kinds, t_keys, t_pris, t_lims) AS t(kind, concurrency_key, priority, lim)
            LEFT JOIN LATERAL (
                SELECT j.run_at, j.id FROM {{schema}}.jobs j
                WHERE j.kind = t.kind AND j.concurrency_key = t.concurrency_key AND j.priority = t.priority
                  AND j.state = 'available'
                ORDER BY j.run_at, j.id
                LIMIT 1) n ON true
            CROSS JOIN LATERAL (
                SELECT count(*) AS running FROM (
                    SELECT 1 FROM {{schema}}.jobs j
                    WHERE j.kind = t.kind AND j.concurrency_key = t.concurrency_key AND j.state = 'running'
                    LIMIT greatest(t.lim, 0)) x) r
        ), moved AS (
            UPDATE {{schema}}.concurrency_keys c
            SET head_run_at = CASE WHEN t.lim > 0 AND t.running >= t.lim THEN 'infinity' ELSE t.run_at END,
                head_id = CASE WHEN t.lim > 0 AND t.running >= t.lim THEN t.lim ELSE t.id END
            FROM t
            WHERE t.id IS NOT NULL
              AND c.kind = t.kind AND c.concurrency_key = t.concurrency_key AND c.priority = t.priority
        )
        DELETE FROM {{schema}}.concurrency_keys c
        USING t
        WHERE t.id IS NULL
          AND c.kind = t.kind AND c.concurrency_key = t.concurrency_key AND c.priority = t.priority;
    END IF;
END;
$$;

-- The reconciler of 008 with the same change: a key is rightly parked when full under its own
-- limit, or the kind's when it has none.
-- For the replicas' reconciler (JobWorker runs it every 30 s; a DBA may too): finds key rows of
-- `kinds` that cannot be right whatever is in flight, and mends them as a claim would. A key is
-- broken when it has a due waiting job at a priority and its row for that priority is missing,
-- or has a head later than that job while not parked, or is parked while fewer jobs run than the
-- key's limit (the matching `key_limits` entry of `keyed_kinds`; none: no limit, so never
-- rightly parked). Keys with a wake-up not yet folded are left to the claims, and each key is
-- decided as claims decide, under its advisory lock, with its row locked (SKIP LOCKED: a claim
-- holding it will set it right) and counted in a new snapshot, so that a claim in progress is
-- never mistaken for a broken key. One caller at a time per schema (others return at once);
-- at most `max_keys` mended per call. Returns what it mended: `was` is 'missing', 'late' or
-- 'parked' (a race left it so), or 'limit_raised' (parked under a lower limit than this
-- replica's, with as many jobs running as that limit: not a fault).
CREATE OR REPLACE FUNCTION {{schema}}.repair_concurrency_keys(
    kinds text[], keyed_kinds text[], key_limits integer[], max_keys integer DEFAULT 1000
) RETURNS TABLE (kind text, concurrency_key text, priority smallint, was text)
LANGUAGE plpgsql
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    k text;
    lim integer;
    kind_lim integer;
    cand record;
    cur record;
    first_job record;
    running integer;
    mended integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(1466458908, hashtext('{{schema}}')) THEN
        RETURN;
    END IF;
    FOR k IN SELECT DISTINCT x FROM unnest(kinds) AS x WHERE x IS NOT NULL LOOP
        kind_lim := key_limits[array_position(keyed_kinds, k)];
        FOR cand IN
            -- Every (key, priority) of the kind with waiting jobs, by a skip scan, with its row.
            WITH RECURSIVE firsts AS (
                (SELECT j.concurrency_key, j.priority FROM {{schema}}.jobs j
                 WHERE j.kind = k AND j.concurrency_key IS NOT NULL AND j.state = 'available'
                 ORDER BY j.concurrency_key, j.priority
                 LIMIT 1)
                UNION ALL
                SELECT n.concurrency_key, n.priority
                FROM firsts f
                CROSS JOIN LATERAL (
                    SELECT j.concurrency_key, j.priority FROM {{schema}}.jobs j
                    WHERE j.kind = k AND j.concurrency_key IS NOT NULL AND j.state = 'available'
                      AND (j.concurrency_key, j.priority) > (f.concurrency_key, f.priority)
                    ORDER BY j.concurrency_key, j.priority
                    LIMIT 1) n
            )
            SELECT f.concurrency_key, f.priority, j.run_at, j.id, c.head_run_at, c.head_id
            FROM firsts f
            CROSS JOIN LATERAL (
                SELECT j.run_at, j.id FROM {{schema}}.jobs j
                WHERE j.kind = k AND j.concurrency_key = f.concurrency_key AND j.priority = f.priority
                  AND j.state = 'available'
                ORDER BY j.run_at, j.id
                LIMIT 1) j
            LEFT JOIN {{schema}}.concurrency_keys c
                ON c.kind = k AND c.concurrency_key = f.concurrency_key AND c.priority = f.priority
            WHERE j.run_at <= now()
              AND (c.head_run_at IS NULL OR (c.head_run_at, c.head_id) > (j.run_at, j.id))
        LOOP
            EXIT WHEN mended >= max_keys;
            running := NULL;
            -- A wake-up not folded yet will set the row right at the next claim.
            CONTINUE WHEN EXISTS (SELECT 1 FROM {{schema}}.concurrency_key_wakeups w
                                  WHERE w.kind = k AND w.concurrency_key = cand.concurrency_key);
            -- A claim is deciding for this key now: it will set the row.
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(1466458907, hashtext(k || E'\x1f' || cand.concurrency_key));
            SELECT l.max_running INTO lim FROM {{schema}}.concurrency_key_limits l
            WHERE l.kind = k AND l.concurrency_key = cand.concurrency_key;
            IF NOT FOUND THEN
                lim := kind_lim;
            END IF;
            SELECT c.head_run_at, c.head_id INTO cur FROM {{schema}}.concurrency_keys c
            WHERE c.kind = k AND c.concurrency_key = cand.concurrency_key AND c.priority = cand.priority
            FOR UPDATE SKIP LOCKED;
            IF NOT FOUND AND EXISTS (SELECT 1 FROM {{schema}}.concurrency_keys c
                                     WHERE c.kind = k AND c.concurrency_key = cand.concurrency_key
                                       AND c.priority = cand.priority) THEN
                CONTINUE;  -- locked by a claim folding wake-ups
            END IF;
            -- New statements from here: new snapshots, which see every claim that committed
            -- for this key before its lock was taken.
            SELECT j.run_at, j.id INTO first_job FROM {{schema}}.jobs j
            WHERE j.kind = k AND j.concurrency_key = cand.concurrency_key AND j.priority = cand.priority
              AND j.state = 'available'
            ORDER BY j.run_at, j.id
            LIMIT 1;
            CONTINUE WHEN NOT FOUND;
            IF cur.head_run_at IS NOT NULL AND (cur.head_run_at, cur.head_id) <= (first_job.run_at, first_job.id) THEN
                CONTINUE;
            END IF;
            IF cur.head_run_at = 'infinity' AND lim > 0 THEN
                SELECT count(*) INTO running FROM (
                    SELECT 1 FROM {{schema}}.jobs j
                    WHERE j.kind = k AND j.concurrency_key = cand.concurrency_key AND j.state = 'running'
                    LIMIT lim) r;
                -- Full under this replica's limit: rightly parked.
                CONTINUE WHEN running >= lim;
            END IF;
            INSERT INTO {{schema}}.concurrency_keys AS c (kind, concurrency_key, priority, head_run_at, head_id)
            VALUES (k, cand.concurrency_key, cand.priority, first_job.run_at, first_job.id)
            ON CONFLICT ON CONSTRAINT concurrency_keys_pkey DO UPDATE
            SET head_run_at = excluded.head_run_at, head_id = excluded.head_id;
            mended := mended + 1;
            kind := k;
            concurrency_key := cand.concurrency_key;
            priority := cand.priority;
            was := CASE WHEN cur.head_run_at IS NULL THEN 'missing'
                        WHEN cur.head_run_at = 'infinity' AND running >= cur.head_id THEN 'limit_raised'
                        WHEN cur.head_run_at = 'infinity' THEN 'parked' ELSE 'late' END;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END;
$$;

COMMENT ON FUNCTION {{schema}}.repair_concurrency_keys(text[], text[], integer[], integer) IS
    'The reconciler: mends key rows left missing, late or parked below their limit; returns what it mended.';
