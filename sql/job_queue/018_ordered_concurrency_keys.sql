-- Ordered concurrency keys (issue 24): a key whose jobs run one at a time, in the order they
-- were inserted (by id), whatever their run_at. The models are River Pro's sequences and Oban
-- Pro's chains: a job waits for every older job of its sequence to end, and a job that fails and
-- retries holds the sequence until it succeeds, is cancelled or dies; then the next one goes.
--
-- Here it is a flag on the key's row of concurrency_key_limits, which the claim already reads
-- under the key's advisory lock for the key's own limit: an unordered key costs no extra read,
-- and everything else the claim does for ordered keys is in branches unordered keys never take.
-- For an ordered key the claim
--   - runs at most one job, whatever the key's own limit (an adaptive limit cannot raise it) or
--     the kind's; a limit of 0 still holds the key;
--   - counts the key's running jobs as for any limit (a new snapshot under the key's lock), and
--     when none runs, proposes only the key's oldest waiting job (lowest id), and takes it only
--     when it is due: a retry or a snooze of the oldest job holds every later one;
--   - moves the key's rows, when that oldest job is not due, to its run_at (step 6), so that
--     claims do not visit the key again before then; the reconciler counts that as right.
-- Finding the oldest waiting job walks the key's waiting jobs in the keyed claim index (an index
-- by id per key would cost every insert of every key); it is done only for ordered keys, once
-- per visit, and a held key is not visited until its oldest job is due.
--
-- max_running becomes nullable: an ordered key without a limit of its own keeps its row with a
-- NULL limit (the kind's, capped at 1), and set_concurrency_key_limit(..., NULL) then keeps the
-- row and only clears the limit. set_concurrency_key_ordered() turns the flag on or off; turning
-- it off wakes the key, as raising a limit does. The oldest waiting job of an ordered key that is
-- deleted (cancelled) wakes the key too, so that the next goes at once.

-- Replicas go on working while this runs, and each of them locks jobs before it reads or writes
-- concurrency_key_limits (a claim locks its candidates first; an outcome updates its job before
-- its statements set a key's limit). Taking jobs first here too, in a mode that also stops a
-- claim's FOR UPDATE (EXCLUSIVE: plain reads go on), keeps this migration from deadlocking with
-- them; claims and inserts wait the few milliseconds until it commits.
LOCK TABLE {{schema}}.jobs IN EXCLUSIVE MODE;

ALTER TABLE {{schema}}.concurrency_key_limits
    ADD COLUMN ordered boolean NOT NULL DEFAULT false,
    ALTER COLUMN max_running DROP NOT NULL,
    ADD CONSTRAINT concurrency_key_limits_limit_or_ordered CHECK (max_running IS NOT NULL OR ordered);
COMMENT ON TABLE {{schema}}.concurrency_key_limits IS
    'Per-key limits that override the kind''s (the worker''s key_limits), and ordered keys. Change them with set_concurrency_key_limit() and set_concurrency_key_ordered().';
COMMENT ON COLUMN {{schema}}.concurrency_key_limits.max_running IS
    'The key''s own limit; NULL (only on an ordered key): the kind''s.';
COMMENT ON COLUMN {{schema}}.concurrency_key_limits.ordered IS
    'Ordered key: one job at a time, the oldest (lowest id) first; a retrying oldest job holds the others.';

-- As in 010, except that removing the limit of an ordered key keeps its row (with a NULL limit).
CREATE OR REPLACE FUNCTION {{schema}}.set_concurrency_key_limit(
    kind text, concurrency_key text, max_running integer
) RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    old integer;
    was_ordered boolean;
BEGIN
    IF max_running IS NOT NULL AND max_running < 0 THEN
        RAISE EXCEPTION 'a concurrency key''s limit must be 0 or more, not %', max_running
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT l.max_running, l.ordered INTO old, was_ordered FROM {{schema}}.concurrency_key_limits l
    WHERE l.kind = set_concurrency_key_limit.kind AND l.concurrency_key = set_concurrency_key_limit.concurrency_key
    FOR UPDATE;
    IF max_running IS NULL AND was_ordered THEN
        UPDATE {{schema}}.concurrency_key_limits l SET max_running = NULL, updated_at = now()
        WHERE l.kind = set_concurrency_key_limit.kind
          AND l.concurrency_key = set_concurrency_key_limit.concurrency_key AND l.max_running IS NOT NULL;
    ELSIF max_running IS NULL THEN
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

-- Makes a key ordered or not; returns whether it was. Turning it off wakes the key (its parked
-- rows, and rows moved to a retrying oldest job, are proposed again at the next claim); turning
-- it on takes effect at the key's next claim (jobs already running go on).
CREATE FUNCTION {{schema}}.set_concurrency_key_ordered(
    kind text, concurrency_key text, ordered boolean
) RETURNS boolean
LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
    was boolean;
    lim integer;
BEGIN
    IF ordered IS NULL THEN
        RAISE EXCEPTION 'ordered must be true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT l.ordered, l.max_running INTO was, lim FROM {{schema}}.concurrency_key_limits l
    WHERE l.kind = set_concurrency_key_ordered.kind
      AND l.concurrency_key = set_concurrency_key_ordered.concurrency_key
    FOR UPDATE;
    was := coalesce(was, false);
    IF ordered AND NOT was THEN
        INSERT INTO {{schema}}.concurrency_key_limits AS l (kind, concurrency_key, max_running, ordered)
        VALUES (set_concurrency_key_ordered.kind, set_concurrency_key_ordered.concurrency_key, NULL, true)
        ON CONFLICT ON CONSTRAINT concurrency_key_limits_pkey DO UPDATE
        SET ordered = true, updated_at = now();
    ELSIF was AND NOT ordered THEN
        IF lim IS NULL THEN
            DELETE FROM {{schema}}.concurrency_key_limits l
            WHERE l.kind = set_concurrency_key_ordered.kind
              AND l.concurrency_key = set_concurrency_key_ordered.concurrency_key;
        ELSE
            UPDATE {{schema}}.concurrency_key_limits l SET ordered = false, updated_at = now()
            WHERE l.kind = set_concurrency_key_ordered.kind
              AND l.concurrency_key = set_concurrency_key_ordered.concurrency_key;
        END IF;
        INSERT INTO {{schema}}.concurrency_key_wakeups (kind, concurrency_key)
        VALUES (set_concurrency_key_ordered.kind, set_concurrency_key_ordered.concurrency_key);
        PERFORM pg_notify('{{channel}}', '');
    END IF;
    RETURN was;
END;
$$;

-- Whether a key is ordered, for programs that show it beside rows of their own without naming
-- the queue's tables.
CREATE FUNCTION {{schema}}.concurrency_key_is_ordered(kind text, concurrency_key text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT l.ordered FROM {{schema}}.concurrency_key_limits l
                     WHERE l.kind = $1 AND l.concurrency_key = $2), false)
$$;

-- The oldest waiting job of an ordered key that leaves without running (deleted: cancelled by its
-- program, or by a DBA; or moved to another key) lets the next one go: a "slot freed" wake-up for
-- the key, as the end of a running job appends, so that the key's rows, which may wait for that
-- job's later run_at (step 6), are proposed again at the next claim. Only deletes and moves of
-- waiting keyed jobs call it (the claim and the outcomes never do), and it looks up the key's row
-- of concurrency_key_limits before writing anything.
CREATE FUNCTION {{schema}}.wake_ordered_concurrency_key() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM {{schema}}.concurrency_key_limits l
               WHERE l.kind = OLD.kind AND l.concurrency_key = OLD.concurrency_key AND l.ordered) THEN
        INSERT INTO {{schema}}.concurrency_key_wakeups (kind, concurrency_key) VALUES (OLD.kind, OLD.concurrency_key);
        PERFORM pg_notify('{{channel}}', '');
    END IF;
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION {{schema}}.wake_ordered_concurrency_key() FROM PUBLIC;

CREATE TRIGGER jobs_wake_ordered_keys_delete
    AFTER DELETE ON {{schema}}.jobs
    FOR EACH ROW WHEN (OLD.state = 'available' AND OLD.concurrency_key IS NOT NULL)
    EXECUTE FUNCTION {{schema}}.wake_ordered_concurrency_key();
CREATE TRIGGER jobs_wake_ordered_keys_move
    AFTER UPDATE OF kind, concurrency_key ON {{schema}}.jobs
    FOR EACH ROW WHEN (OLD.state = 'available' AND OLD.concurrency_key IS NOT NULL
                       AND (OLD.kind <> NEW.kind OR OLD.concurrency_key IS DISTINCT FROM NEW.concurrency_key))
    EXECUTE FUNCTION {{schema}}.wake_ordered_concurrency_key();

-- The claim of 010 with the ordered branch in step 3 and a step 6 (see the header).
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
    -- The key is ordered (018): only its oldest job may run, one at a time.
    ord boolean;
    -- Ordered keys visited, for step 6.
    o_kinds text[] := '{}';
    o_keys text[] := '{}';
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
                -- The same row says whether the key is ordered: unordered keys pay nothing more.
                SELECT l.max_running, l.ordered INTO lim, ord FROM {{schema}}.concurrency_key_limits l
                WHERE l.kind = k AND l.concurrency_key = h.concurrency_key;
                IF NOT FOUND THEN
                    lim := kind_lim;
                    ord := false;
                ELSIF ord THEN
                    -- One at a time, whatever the key's or the kind's limit (0 still holds it).
                    lim := least(coalesce(lim, kind_lim, 1), 1);
                    o_kinds := o_kinds || k;
                    o_keys := o_keys || h.concurrency_key;
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
                IF ord THEN
                    -- Nothing of the key runs (allowance): its oldest job, by id, is its only
                    -- candidate, taken when it is at this priority, due and before the cut. A
                    -- retrying or snoozed oldest job holds the line. `+ 0`: min() by walking the
                    -- key's waiting jobs, never the primary key from the queue's oldest job.
                    added := ARRAY(
                        SELECT ROW(j.priority, j.run_at, j.id)::{{schema}}.claim_position
                        FROM {{schema}}.jobs j
                        WHERE j.id = (SELECT min(x.id + 0) FROM {{schema}}.jobs x
                                      WHERE x.kind = k AND x.concurrency_key = h.concurrency_key
                                        AND x.state = 'available')
                          AND j.kind = k AND j.concurrency_key = h.concurrency_key
                          AND j.priority = p AND j.state = 'available' AND j.run_at <= now()
                          AND (cut IS NULL OR ROW(j.priority, j.run_at, j.id)::{{schema}}.claim_position < cut)
                        FOR UPDATE SKIP LOCKED);
                ELSIF cut IS NULL OR p < cut.priority THEN
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

    -- 6. Ordered keys only (018). A row of an ordered key whose oldest job waits for a later
    --    time (a retry, a snooze) is moved to that job, so that claims pass it by until then
    --    instead of visiting it to find nothing. Parked rows stay parked.
    IF cardinality(o_kinds) > 0 THEN
        UPDATE {{schema}}.concurrency_keys c
        SET head_run_at = o.run_at, head_id = o.id
        FROM unnest(o_kinds, o_keys) AS t(kind, concurrency_key)
        CROSS JOIN LATERAL (
            SELECT j.run_at, j.id FROM {{schema}}.jobs j
            WHERE j.id = (SELECT min(x.id + 0) FROM {{schema}}.jobs x
                          WHERE x.kind = t.kind AND x.concurrency_key = t.concurrency_key
                            AND x.state = 'available')) o
        WHERE c.kind = t.kind AND c.concurrency_key = t.concurrency_key
          AND c.head_run_at <> 'infinity' AND (c.head_run_at, c.head_id) < (o.run_at, o.id);
    END IF;
END;
$$;

-- The reconciler of 010, which counts an ordered key's row waiting for its oldest job as right.
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
    ord boolean;
    oldest record;
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
            SELECT l.max_running, l.ordered INTO lim, ord FROM {{schema}}.concurrency_key_limits l
            WHERE l.kind = k AND l.concurrency_key = cand.concurrency_key;
            IF NOT FOUND THEN
                lim := kind_lim;
                ord := false;
            ELSIF ord THEN
                lim := least(coalesce(lim, kind_lim, 1), 1);
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
            IF ord THEN
                -- An ordered key's row rightly waits for its oldest job (the claim's step 6).
                SELECT j.run_at, j.id INTO oldest FROM {{schema}}.jobs j
                WHERE j.id = (SELECT min(x.id + 0) FROM {{schema}}.jobs x
                              WHERE x.kind = k AND x.concurrency_key = cand.concurrency_key
                                AND x.state = 'available');
                IF FOUND AND (oldest.run_at, oldest.id) > (first_job.run_at, first_job.id) THEN
                    first_job := oldest;
                END IF;
            END IF;
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
