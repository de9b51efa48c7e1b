-- The claim's fetch before the cut, in two ranges. Once a claim has more candidates than it
-- can take, it fetches a key's jobs only up to the cut (the last candidate it can still take).
-- That fetch bounded the key's jobs by the row comparison `(run_at, id) < (cut.run_at, cut.id)`,
-- and a B-tree scan of PostgreSQL 15 does not stop where such a comparison fails on its second
-- column: it read on through every job of the key due at the cut's run_at. Those are many, since
-- the jobs one transaction inserts share its now() (a fan-out's deliveries, a web app's bulk
-- insert). With 16 keys of 2,000 jobs inserted by one statement, the fetch read 33 index pages
-- to return 18 rows, and a claim of 67 jobs took 15 ms, against 6 where each job had a run_at of
-- its own (on a table that many earlier claims had bloated).
--
-- The same jobs in the same order are now two index ranges: those due before the cut's run_at,
-- then those at its run_at with a lower id, each a range that ends where the first row past it
-- is. Nothing else in the claim changes.

-- The claim of 021, its fetch before the cut in two ranges.
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
    --    Wake-ups this transaction wrote itself (its outcomes ended keyed jobs, 021) are read
    --    but left in place: other claims may have counted those jobs as running, and parked
    --    their keys, until this transaction commits, so the wake-ups must outlive it.
    WITH taken AS (
        DELETE FROM {{schema}}.concurrency_key_wakeups w
        WHERE w.id IN (SELECT w2.id FROM {{schema}}.concurrency_key_wakeups w2
                       WHERE w2.xmin IS DISTINCT FROM pg_current_xact_id_if_assigned()::xid
                       ORDER BY w2.id LIMIT 1000 FOR UPDATE SKIP LOCKED)
        RETURNING w.kind, w.concurrency_key, w.priority, w.run_at, w.job_id
    ), w AS (
        SELECT t.kind, t.concurrency_key, t.priority, t.run_at, t.job_id FROM taken t
        UNION ALL
        SELECT o.kind, o.concurrency_key, o.priority, o.run_at, o.job_id
        FROM {{schema}}.concurrency_key_wakeups o
        WHERE o.xmin = pg_current_xact_id_if_assigned()::xid
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
                    -- Before the cut, in two ranges (see the header): the jobs due before the
                    -- cut's run_at, then, if the allowance is not used up, those at its run_at
                    -- with a lower id.
                    added := ARRAY(
                        SELECT ROW(j.priority, j.run_at, j.id)::{{schema}}.claim_position
                        FROM {{schema}}.jobs j
                        WHERE j.kind = k AND j.concurrency_key = h.concurrency_key AND j.priority = p
                          AND j.state = 'available' AND j.run_at <= now() AND j.run_at < cut.run_at
                        ORDER BY j.run_at, j.id
                        LIMIT allowance
                        FOR UPDATE SKIP LOCKED);
                    IF cardinality(added) < allowance AND cut.run_at <= now() THEN
                        added := added || ARRAY(
                            SELECT ROW(j.priority, j.run_at, j.id)::{{schema}}.claim_position
                            FROM {{schema}}.jobs j
                            WHERE j.kind = k AND j.concurrency_key = h.concurrency_key AND j.priority = p
                              AND j.state = 'available' AND j.run_at = cut.run_at AND j.id < cut.id
                            ORDER BY j.id
                            LIMIT allowance - cardinality(added)
                            FOR UPDATE SKIP LOCKED);
                    END IF;
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
