-- Generated from a freshly migrated database (SchemaSnapshotTests); do not edit. Regenerate with
-- make schema-snapshot.

CREATE SCHEMA job_queue;

CREATE TYPE job_queue.claim_position AS (
	priority smallint,
	run_at timestamp with time zone,
	id bigint
);

CREATE FUNCTION job_queue.add_dead_letter_reason(new_reason text, new_description text) RETURNS void
    LANGUAGE sql
    AS $$
    INSERT INTO job_queue.dead_letter_reasons (reason, description) VALUES (new_reason, new_description)
    ON CONFLICT (reason) DO UPDATE SET description = EXCLUDED.description
$$;

CREATE FUNCTION job_queue.claim_jobs(kinds text[], keyed_kinds text[], key_limits integer[], batch integer, worker text, lease interval) RETURNS TABLE(id bigint, kind text, payload jsonb, priority smallint, attempt integer, max_attempts integer, released integer, created_at timestamp with time zone, run_at timestamp with time zone, concurrency_key text)
    LANGUAGE plpgsql
    SET enable_sort TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
#variable_conflict use_column
DECLARE
    -- Jobs locked so far.
    cands job_queue.claim_position[];
    added job_queue.claim_position[];
    -- Once there are `batch` candidates, the batch-th at the last count: nothing after it can be
    -- claimed. Recounted only when candidates reach twice `batch`, so it may be late, never early.
    cut job_queue.claim_position;
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
    IF NOT EXISTS (SELECT 1 FROM job_queue.concurrency_key_wakeups)
       AND NOT EXISTS (SELECT 1 FROM job_queue.concurrency_keys c
                       WHERE c.kind = ANY(kinds) AND c.head_run_at <= now()) THEN
        -- `id = ANY (ARRAY(...))`, not a join: the plan is generic (the batch size unknown), and
        -- a join was planned as a hash over the whole queue once statistics showed a backlog.
        RETURN QUERY
        UPDATE job_queue.jobs j
        SET state = 'running', attempt = j.attempt + 1, locked_by = worker,
            locked_until = now() + lease, attempted_at = now()
        WHERE j.id = ANY (ARRAY(
            SELECT p.id FROM job_queue.jobs p
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
        DELETE FROM job_queue.concurrency_key_wakeups w
        WHERE w.id IN (SELECT w2.id FROM job_queue.concurrency_key_wakeups w2
                       WHERE w2.xmin IS DISTINCT FROM pg_current_xact_id_if_assigned()::xid
                       ORDER BY w2.id LIMIT 1000 FOR UPDATE SKIP LOCKED)
        RETURNING w.kind, w.concurrency_key, w.priority, w.run_at, w.job_id
    ), w AS (
        SELECT t.kind, t.concurrency_key, t.priority, t.run_at, t.job_id FROM taken t
        UNION ALL
        SELECT o.kind, o.concurrency_key, o.priority, o.run_at, o.job_id
        FROM job_queue.concurrency_key_wakeups o
        WHERE o.xmin = pg_current_xact_id_if_assigned()::xid
    ), freed AS (
        SELECT DISTINCT w.kind, w.concurrency_key FROM w WHERE w.priority IS NULL
    ), proposed AS (
        SELECT w.kind, w.concurrency_key, w.priority, w.run_at, w.job_id FROM w WHERE w.priority IS NOT NULL
        UNION ALL
        SELECT c.kind, c.concurrency_key, c.priority, '-infinity'::timestamptz, 0::bigint
        FROM job_queue.concurrency_keys c
        WHERE (c.kind, c.concurrency_key) IN (SELECT f.kind, f.concurrency_key FROM freed f)
          AND NOT EXISTS (SELECT 1 FROM job_queue.jobs j
                          WHERE j.kind = c.kind AND j.concurrency_key = c.concurrency_key
                            AND j.priority = c.priority AND j.state = 'available')
        UNION ALL
        SELECT f.kind, f.concurrency_key, n.priority, n.run_at, n.id
        FROM freed f
        CROSS JOIN LATERAL job_queue.first_waiting_per_priority(f.kind, f.concurrency_key) n
    ), firsts AS (
        SELECT DISTINCT ON (o.kind, o.concurrency_key, o.priority)
               o.kind, o.concurrency_key, o.priority, o.run_at, o.job_id
        FROM proposed o
        ORDER BY o.kind, o.concurrency_key, o.priority, o.run_at, o.job_id
    )
    INSERT INTO job_queue.concurrency_keys AS c (kind, concurrency_key, priority, head_run_at, head_id)
    SELECT f.kind, f.concurrency_key, f.priority, f.run_at, f.job_id FROM firsts f
    ORDER BY f.kind, f.concurrency_key, f.priority
    ON CONFLICT ON CONSTRAINT concurrency_keys_pkey DO UPDATE
    SET head_run_at = excluded.head_run_at, head_id = excluded.head_id
    WHERE (excluded.head_run_at, excluded.head_id) < (c.head_run_at, c.head_id);

    -- 2.
    cands := ARRAY(
        SELECT ROW(j.priority, j.run_at, j.id)::job_queue.claim_position
        FROM job_queue.jobs j
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
        SELECT min(c.priority) INTO p FROM job_queue.concurrency_keys c WHERE c.kind = k;
        WHILE p IS NOT NULL AND (cut IS NULL OR p <= cut.priority) LOOP
            -- FETCH takes one row at a time: a FOR loop would lock ten rows ahead of need.
            OPEN keys_cur FOR
                SELECT c.concurrency_key, c.head_run_at, c.head_id
                FROM job_queue.concurrency_keys c
                WHERE c.kind = k AND c.priority = p AND c.head_run_at <= now()
                ORDER BY c.head_run_at, c.head_id
                FOR UPDATE SKIP LOCKED;
            LOOP
                FETCH keys_cur INTO h;
                EXIT WHEN NOT FOUND;
                EXIT WHEN cut IS NOT NULL AND ROW(p, h.head_run_at, h.head_id)::job_queue.claim_position >= cut;
                key_name := k || E'\x1f' || h.concurrency_key;
                -- Another claim is deciding for this key (at another priority): skip it.
                CONTINUE WHEN NOT pg_try_advisory_xact_lock(1466458907, hashtext(key_name));
                -- The key's own limit, read under the key's lock in a new snapshot (see the header).
                -- The same row says whether the key is ordered: unordered keys pay nothing more.
                SELECT l.max_running, l.ordered INTO lim, ord FROM job_queue.concurrency_key_limits l
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
                        SELECT 1 FROM job_queue.jobs j
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
                        SELECT ROW(j.priority, j.run_at, j.id)::job_queue.claim_position
                        FROM job_queue.jobs j
                        WHERE j.id = (SELECT min(x.id + 0) FROM job_queue.jobs x
                                      WHERE x.kind = k AND x.concurrency_key = h.concurrency_key
                                        AND x.state = 'available')
                          AND j.kind = k AND j.concurrency_key = h.concurrency_key
                          AND j.priority = p AND j.state = 'available' AND j.run_at <= now()
                          AND (cut IS NULL OR ROW(j.priority, j.run_at, j.id)::job_queue.claim_position < cut)
                        FOR UPDATE SKIP LOCKED);
                ELSIF cut IS NULL OR p < cut.priority THEN
                    added := ARRAY(
                        SELECT ROW(j.priority, j.run_at, j.id)::job_queue.claim_position
                        FROM job_queue.jobs j
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
                        SELECT ROW(j.priority, j.run_at, j.id)::job_queue.claim_position
                        FROM job_queue.jobs j
                        WHERE j.kind = k AND j.concurrency_key = h.concurrency_key AND j.priority = p
                          AND j.state = 'available' AND j.run_at <= now() AND j.run_at < cut.run_at
                        ORDER BY j.run_at, j.id
                        LIMIT allowance
                        FOR UPDATE SKIP LOCKED);
                    IF cardinality(added) < allowance AND cut.run_at <= now() THEN
                        added := added || ARRAY(
                            SELECT ROW(j.priority, j.run_at, j.id)::job_queue.claim_position
                            FROM job_queue.jobs j
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
                        cands := ARRAY(SELECT ROW(u.priority, u.run_at, u.id)::job_queue.claim_position
                                       FROM unnest(cands) AS u ORDER BY u.priority, u.run_at, u.id LIMIT batch);
                        cut := cands[batch];
                    END IF;
                END IF;
            END LOOP;
            CLOSE keys_cur;
            SELECT min(c.priority) INTO p FROM job_queue.concurrency_keys c WHERE c.kind = k AND c.priority > p;
        END LOOP;
    END LOOP;

    -- 4. By primary key, whatever the table's statistics say (a join could be planned as a scan
    --    of the whole queue when the statistics predate the backlog).
    RETURN QUERY
    UPDATE job_queue.jobs j
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
                SELECT j.run_at, j.id FROM job_queue.jobs j
                WHERE j.kind = t.kind AND j.concurrency_key = t.concurrency_key AND j.priority = t.priority
                  AND j.state = 'available'
                ORDER BY j.run_at, j.id
                LIMIT 1) n ON true
            CROSS JOIN LATERAL (
                SELECT count(*) AS running FROM (
                    SELECT 1 FROM job_queue.jobs j
                    WHERE j.kind = t.kind AND j.concurrency_key = t.concurrency_key AND j.state = 'running'
                    LIMIT greatest(t.lim, 0)) x) r
        ), moved AS (
            UPDATE job_queue.concurrency_keys c
            SET head_run_at = CASE WHEN t.lim > 0 AND t.running >= t.lim THEN 'infinity' ELSE t.run_at END,
                head_id = CASE WHEN t.lim > 0 AND t.running >= t.lim THEN t.lim ELSE t.id END
            FROM t
            WHERE t.id IS NOT NULL
              AND c.kind = t.kind AND c.concurrency_key = t.concurrency_key AND c.priority = t.priority
        )
        DELETE FROM job_queue.concurrency_keys c
        USING t
        WHERE t.id IS NULL
          AND c.kind = t.kind AND c.concurrency_key = t.concurrency_key AND c.priority = t.priority;
    END IF;

    -- 6. Ordered keys only (018). A row of an ordered key whose oldest job waits for a later
    --    time (a retry, a snooze) is moved to that job, so that claims pass it by until then
    --    instead of visiting it to find nothing. Parked rows stay parked.
    IF cardinality(o_kinds) > 0 THEN
        UPDATE job_queue.concurrency_keys c
        SET head_run_at = o.run_at, head_id = o.id
        FROM unnest(o_kinds, o_keys) AS t(kind, concurrency_key)
        CROSS JOIN LATERAL (
            SELECT j.run_at, j.id FROM job_queue.jobs j
            WHERE j.id = (SELECT min(x.id + 0) FROM job_queue.jobs x
                          WHERE x.kind = t.kind AND x.concurrency_key = t.concurrency_key
                            AND x.state = 'available')) o
        WHERE c.kind = t.kind AND c.concurrency_key = t.concurrency_key
          AND c.head_run_at <> 'infinity' AND (c.head_run_at, c.head_id) < (o.run_at, o.id);
    END IF;
END;
$$;

COMMENT ON FUNCTION job_queue.claim_jobs(kinds text[], keyed_kinds text[], key_limits integer[], batch integer, worker text, lease interval) IS 'The claim. kinds: kinds this replica runs; keyed_kinds/key_limits: per-key limits by kind (same length); batch: free slots; worker: locked_by; lease: locked_until - now().';

CREATE FUNCTION job_queue.concurrency_key_is_ordered(kind text, concurrency_key text) RETURNS boolean
    LANGUAGE sql STABLE
    AS $_$
    SELECT coalesce((SELECT l.ordered FROM job_queue.concurrency_key_limits l
                     WHERE l.kind = $1 AND l.concurrency_key = $2), false)
$_$;

CREATE FUNCTION job_queue.create_history_partitions(step interval, ahead interval, at timestamp with time zone DEFAULT now()) RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    h record;
    upper timestamptz;
    utc timestamp;
    part name;
    k text;
BEGIN
    IF step < interval '1 hour' OR step > interval '31 days' THEN
        RAISE EXCEPTION 'history partitions must be from 1 hour to 31 days long, not %', step;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('job_queue.history_partitions'));
    FOR h IN SELECT * FROM job_queue.history_tables WHERE legacy_until IS NULL
             ORDER BY table_schema, table_name LOOP
        SELECT max(to_at) INTO upper FROM job_queue.history_partitions
        WHERE table_schema = h.table_schema AND table_name = h.table_name;
        IF upper = 'infinity' THEN
            CONTINUE;  -- a DBA attached a partition without an upper bound
        END IF;
        upper := coalesce(upper, date_trunc('day', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC');
        WHILE upper < at + ahead LOOP
            utc := upper AT TIME ZONE 'UTC';
            part := h.table_name || '_p' || to_char(utc, 'YYYYMMDD')
                    || CASE WHEN utc::time = '00:00' THEN '' ELSE to_char(utc, '"_"HH24MI') END;
            EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
                           ' INCLUDING STORAGE INCLUDING COMMENTS)', h.table_schema, part, h.table_schema, h.table_name);
            IF h.storage IS NOT NULL THEN
                EXECUTE format('ALTER TABLE %I.%I SET (%s)', h.table_schema, part, h.storage);
            END IF;
            FOREACH k IN ARRAY h.unique_keys LOOP
                EXECUTE format('CREATE UNIQUE INDEX ON %I.%I (%s)', h.table_schema, part, k);
            END LOOP;
            EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                           h.table_schema, h.table_name, h.table_schema, part, upper, upper + step);
            RETURN NEXT h.table_schema || '.' || part;
            upper := upper + step;
        END LOOP;
    END LOOP;
END;
$$;

CREATE FUNCTION job_queue.drop_history_partitions(older_than timestamp with time zone, detach boolean DEFAULT true) RETURNS SETOF text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    p record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('job_queue.history_partitions'));
    FOR p IN SELECT d.table_schema, d.table_name, d.partition_name, c.oid AS relid,
                    i.inhdetachpending AS pending, i.inhrelid IS NOT NULL AS attached
             FROM job_queue.history_detaching d
             LEFT JOIN pg_namespace n ON n.nspname = d.table_schema
             LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = d.partition_name
             LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LOOP
        IF p.pending THEN
            EXECUTE format('ALTER TABLE %I.%I DETACH PARTITION %I.%I FINALIZE',
                           p.table_schema, p.table_name, p.table_schema, p.partition_name);
        ELSIF p.attached THEN
            CONTINUE;  -- the detach rolled back: it is past retention still, and handled below
        END IF;
        -- Only a table named as the upkeep names partitions is dropped.
        IF p.relid IS NOT NULL AND EXISTS (
            SELECT 1 FROM job_queue.history_tables h
            WHERE h.table_schema = p.table_schema AND h.table_name = p.table_name
              AND (p.partition_name LIKE h.table_name || '\_p%' OR p.partition_name = h.table_name || '_legacy')) THEN
            EXECUTE format('DROP TABLE %I.%I', p.table_schema, p.partition_name);
            RETURN NEXT p.table_schema || '.' || p.partition_name;
        END IF;
        DELETE FROM job_queue.history_detaching
        WHERE table_schema = p.table_schema AND partition_name = p.partition_name;
    END LOOP;
    FOR p IN SELECT table_schema, table_name, partition_name, detach_pending
             FROM job_queue.history_partitions
             WHERE to_at <= older_than ORDER BY to_at LOOP
        IF p.detach_pending THEN
            EXECUTE format('ALTER TABLE %I.%I DETACH PARTITION %I.%I FINALIZE',
                           p.table_schema, p.table_name, p.table_schema, p.partition_name);
        ELSIF detach THEN
            EXECUTE format('ALTER TABLE %I.%I DETACH PARTITION %I.%I',
                           p.table_schema, p.table_name, p.table_schema, p.partition_name);
        ELSE
            CONTINUE;
        END IF;
        EXECUTE format('DROP TABLE %I.%I', p.table_schema, p.partition_name);
        RETURN NEXT p.table_schema || '.' || p.partition_name;
    END LOOP;
END;
$$;

CREATE FUNCTION job_queue.enqueue(kind text, payload jsonb DEFAULT '{}'::jsonb, run_at timestamp with time zone DEFAULT now(), priority integer DEFAULT 0, max_attempts integer DEFAULT NULL::integer, unique_key text DEFAULT NULL::text, concurrency_key text DEFAULT NULL::text, trace_context text DEFAULT NULL::text) RETURNS bigint
    LANGUAGE sql
    AS $$
    INSERT INTO job_queue.jobs
        (kind, payload, run_at, priority, max_attempts, unique_key, concurrency_key, trace_context)
    VALUES (enqueue.kind, enqueue.payload, enqueue.run_at, enqueue.priority::smallint, enqueue.max_attempts,
            enqueue.unique_key, enqueue.concurrency_key, enqueue.trace_context)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id;
$$;

CREATE FUNCTION job_queue.first_waiting_per_priority(kind text, concurrency_key text) RETURNS TABLE(priority smallint, run_at timestamp with time zone, id bigint)
    LANGUAGE sql STABLE
    AS $$
    WITH RECURSIVE firsts AS (
        (SELECT j.priority, j.run_at, j.id FROM job_queue.jobs j
         WHERE j.kind = first_waiting_per_priority.kind
           AND j.concurrency_key = first_waiting_per_priority.concurrency_key AND j.state = 'available'
         ORDER BY j.priority, j.run_at, j.id
         LIMIT 1)
        UNION ALL
        SELECT n.priority, n.run_at, n.id
        FROM firsts f
        CROSS JOIN LATERAL (
            SELECT j.priority, j.run_at, j.id FROM job_queue.jobs j
            WHERE j.kind = first_waiting_per_priority.kind
              AND j.concurrency_key = first_waiting_per_priority.concurrency_key AND j.state = 'available'
              AND j.priority > f.priority
            ORDER BY j.priority, j.run_at, j.id
            LIMIT 1) n
    )
    SELECT * FROM firsts;
$$;

CREATE FUNCTION job_queue.history_bound(bound text) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT CASE bound WHEN 'MINVALUE' THEN '-infinity'::timestamptz
                      WHEN 'MAXVALUE' THEN 'infinity'::timestamptz
                      ELSE pg_catalog.btrim(bound, '''')::timestamptz END
$$;

CREATE FUNCTION job_queue.history_partition(tbl regclass) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    h record;
    legacy name;
    ix record;
    col record;
    last bigint;
    seq text;
BEGIN
    SELECT ht.* INTO STRICT h FROM job_queue.history_tables ht
    JOIN pg_class c ON c.relname = ht.table_name
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = ht.table_schema
    WHERE c.oid = tbl AND ht.legacy_until IS NOT NULL;
    legacy := h.table_name || '_legacy';
    EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', h.table_schema, h.table_name, legacy);
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY'
                   ' INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (%I)',
                   h.table_schema, h.table_name, h.table_schema, legacy, h.partition_column);
    EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', h.table_schema, h.table_name, h.table_name || '_history_bound');
    EXECUTE format('COMMENT ON TABLE %I.%I IS %L', h.table_schema, h.table_name, obj_description(tbl, 'pg_class'));
    -- Identity columns: the new table's sequence continues the old one's, which goes with it.
    FOR col IN SELECT attname FROM pg_attribute WHERE attrelid = tbl AND attidentity <> '' LOOP
        seq := pg_get_serial_sequence(format('%I.%I', h.table_schema, legacy), col.attname);
        EXECUTE format('SELECT last_value FROM %s', seq) INTO last;
        EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN %I DROP IDENTITY', h.table_schema, legacy, col.attname);
        seq := pg_get_serial_sequence(format('%I.%I', h.table_schema, h.table_name), col.attname);
        PERFORM setval(seq, last);
        EXECUTE format('ALTER SEQUENCE %s RENAME TO %I', seq, h.table_name || '_' || col.attname || '_seq');
    END LOOP;
    -- The old table's plain indexes become the new table's (same definitions, same names): the
    -- attach adopts them instead of building new ones. Its unique ones stay its own.
    FOR ix IN SELECT i.indexrelid, c.relname, pg_get_indexdef(i.indexrelid) AS def
              FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = tbl AND NOT i.indisunique LOOP
        EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', h.table_schema, ix.relname, ix.relname || '_legacy');
        EXECUTE format('CREATE INDEX %I ON %I.%I USING %s', ix.relname, h.table_schema, h.table_name,
                       substring(ix.def FROM ' USING (.*)$'));
    END LOOP;
    EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (MINVALUE) TO (%L)',
                   h.table_schema, h.table_name, h.table_schema, legacy, h.legacy_until);
    EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', h.table_schema, legacy, h.table_name || '_history_bound');
    UPDATE job_queue.history_tables SET legacy_until = NULL
    WHERE table_schema = h.table_schema AND table_name = h.table_name;
END;
$_$;

CREATE FUNCTION job_queue.history_prepare(tbl regclass, partition_column name, unique_keys text[], storage text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    s name; t name;
    until timestamptz := (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '2 days') AT TIME ZONE 'UTC';
BEGIN
    SELECT n.nspname, c.relname INTO s, t
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    INSERT INTO job_queue.history_tables (table_schema, table_name, partition_column, unique_keys, storage, legacy_until)
    VALUES (s, t, partition_column, unique_keys, storage, until);
    EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I CHECK (%I < %L) NOT VALID',
                   s, t, t || '_history_bound', partition_column, until);
END;
$$;

CREATE FUNCTION job_queue.hook_procedure(hook_function text, signature text) RETURNS regprocedure
    LANGUAGE sql STABLE
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
    SELECT p.oid::regprocedure
    FROM pg_catalog.pg_proc p
    WHERE p.oid = pg_catalog.to_regprocedure(hook_function || signature)
      AND p.proowner = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
$$;

CREATE FUNCTION job_queue.notify_jobs_inserted() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    k text;
BEGIN
    FOR k IN SELECT DISTINCT kind FROM inserted_jobs WHERE run_at <= now() LOOP
        PERFORM pg_notify('job_queue_jobs', k);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE FUNCTION job_queue.notify_paused_kinds() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('job_queue_jobs', '');
    RETURN NULL;
END;
$$;

CREATE FUNCTION job_queue.reap_expired_leases(default_max_attempts integer, batch integer DEFAULT 500) RETURNS TABLE(kind text, jobs integer)
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH expired AS (
        SELECT id, locked_by, attempted_at
        FROM job_queue.jobs
        WHERE state = 'running' AND locked_until < now()
        ORDER BY locked_until
        LIMIT batch
        FOR UPDATE SKIP LOCKED
    ), dead AS (
        DELETE FROM job_queue.jobs j
        USING expired e
        WHERE j.id = e.id AND j.attempt >= coalesce(j.max_attempts, default_max_attempts)
        RETURNING j.*, e.locked_by AS lost_by, e.attempted_at AS lost_started
    ), dead_rows AS (
        INSERT INTO job_queue.dead_letter_jobs
            (job_id, kind, payload, priority, attempts, max_attempts, reason, last_error, unique_key, created_at,
             concurrency_key)
        SELECT id, kind, payload, priority, attempt, coalesce(max_attempts, default_max_attempts),
               'attempts_exhausted', 'lease expired on the last attempt (worker ' || lost_by || ' stopped renewing it)',
               unique_key, created_at, concurrency_key
        FROM dead
    ), back AS (
        UPDATE job_queue.jobs j
        SET state = 'available', locked_by = NULL, locked_until = NULL, run_at = now(),
            last_error = 'lease expired (worker ' || e.locked_by || ' stopped renewing it)'
        FROM expired e
        WHERE j.id = e.id AND j.attempt < coalesce(j.max_attempts, default_max_attempts)
        RETURNING j.id, j.kind, j.attempt, e.locked_by AS lost_by, e.attempted_at AS lost_started
    ), attempts AS (
        INSERT INTO job_queue.job_attempts (job_id, kind, attempt, worker_id, started_at, outcome, error)
        SELECT id, kind, attempt, lost_by, coalesce(lost_started, now()), 'lost', 'lease expired'
        FROM back
        UNION ALL
        SELECT id, kind, attempt, lost_by, coalesce(lost_started, now()), 'lost', 'lease expired'
        FROM dead
        RETURNING job_attempts.kind
    )
    SELECT a.kind, count(*)::integer FROM attempts a GROUP BY a.kind;
    IF FOUND THEN
        PERFORM pg_notify('job_queue_jobs', '');
    END IF;
END;
$$;

CREATE FUNCTION job_queue.rebuild_concurrency_keys() RETURNS integer
    LANGUAGE sql
    AS $$
    DELETE FROM job_queue.concurrency_keys;
    WITH w AS (
        INSERT INTO job_queue.concurrency_key_wakeups (kind, concurrency_key, priority, run_at, job_id)
        SELECT DISTINCT ON (kind, concurrency_key, priority) kind, concurrency_key, priority, run_at, id
        FROM job_queue.jobs
        WHERE state = 'available' AND concurrency_key IS NOT NULL
        ORDER BY kind, concurrency_key, priority, run_at, id
        RETURNING 1
    )
    SELECT count(*)::integer FROM w;
$$;

CREATE FUNCTION job_queue.repair_concurrency_keys(kinds text[], keyed_kinds text[], key_limits integer[], max_keys integer DEFAULT 1000) RETURNS TABLE(kind text, concurrency_key text, priority smallint, was text)
    LANGUAGE plpgsql
    SET enable_seqscan TO 'off'
    SET jit TO 'off'
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
    IF NOT pg_try_advisory_xact_lock(1466458908, hashtext('job_queue')) THEN
        RETURN;
    END IF;
    FOR k IN SELECT DISTINCT x FROM unnest(kinds) AS x WHERE x IS NOT NULL LOOP
        kind_lim := key_limits[array_position(keyed_kinds, k)];
        FOR cand IN
            -- Every (key, priority) of the kind with waiting jobs, by a skip scan, with its row.
            WITH RECURSIVE firsts AS (
                (SELECT j.concurrency_key, j.priority FROM job_queue.jobs j
                 WHERE j.kind = k AND j.concurrency_key IS NOT NULL AND j.state = 'available'
                 ORDER BY j.concurrency_key, j.priority
                 LIMIT 1)
                UNION ALL
                SELECT n.concurrency_key, n.priority
                FROM firsts f
                CROSS JOIN LATERAL (
                    SELECT j.concurrency_key, j.priority FROM job_queue.jobs j
                    WHERE j.kind = k AND j.concurrency_key IS NOT NULL AND j.state = 'available'
                      AND (j.concurrency_key, j.priority) > (f.concurrency_key, f.priority)
                    ORDER BY j.concurrency_key, j.priority
                    LIMIT 1) n
            )
            SELECT f.concurrency_key, f.priority, j.run_at, j.id, c.head_run_at, c.head_id
            FROM firsts f
            CROSS JOIN LATERAL (
                SELECT j.run_at, j.id FROM job_queue.jobs j
                WHERE j.kind = k AND j.concurrency_key = f.concurrency_key AND j.priority = f.priority
                  AND j.state = 'available'
                ORDER BY j.run_at, j.id
                LIMIT 1) j
            LEFT JOIN job_queue.concurrency_keys c
                ON c.kind = k AND c.concurrency_key = f.concurrency_key AND c.priority = f.priority
            WHERE j.run_at <= now()
              AND (c.head_run_at IS NULL OR (c.head_run_at, c.head_id) > (j.run_at, j.id))
        LOOP
            EXIT WHEN mended >= max_keys;
            running := NULL;
            -- A wake-up not folded yet will set the row right at the next claim.
            CONTINUE WHEN EXISTS (SELECT 1 FROM job_queue.concurrency_key_wakeups w
                                  WHERE w.kind = k AND w.concurrency_key = cand.concurrency_key);
            -- A claim is deciding for this key now: it will set the row.
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(1466458907, hashtext(k || E'\x1f' || cand.concurrency_key));
            SELECT l.max_running, l.ordered INTO lim, ord FROM job_queue.concurrency_key_limits l
            WHERE l.kind = k AND l.concurrency_key = cand.concurrency_key;
            IF NOT FOUND THEN
                lim := kind_lim;
                ord := false;
            ELSIF ord THEN
                lim := least(coalesce(lim, kind_lim, 1), 1);
            END IF;
            SELECT c.head_run_at, c.head_id INTO cur FROM job_queue.concurrency_keys c
            WHERE c.kind = k AND c.concurrency_key = cand.concurrency_key AND c.priority = cand.priority
            FOR UPDATE SKIP LOCKED;
            IF NOT FOUND AND EXISTS (SELECT 1 FROM job_queue.concurrency_keys c
                                     WHERE c.kind = k AND c.concurrency_key = cand.concurrency_key
                                       AND c.priority = cand.priority) THEN
                CONTINUE;  -- locked by a claim folding wake-ups
            END IF;
            -- New statements from here: new snapshots, which see every claim that committed
            -- for this key before its lock was taken.
            SELECT j.run_at, j.id INTO first_job FROM job_queue.jobs j
            WHERE j.kind = k AND j.concurrency_key = cand.concurrency_key AND j.priority = cand.priority
              AND j.state = 'available'
            ORDER BY j.run_at, j.id
            LIMIT 1;
            CONTINUE WHEN NOT FOUND;
            IF ord THEN
                -- An ordered key's row rightly waits for its oldest job (the claim's step 6).
                SELECT j.run_at, j.id INTO oldest FROM job_queue.jobs j
                WHERE j.id = (SELECT min(x.id + 0) FROM job_queue.jobs x
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
                    SELECT 1 FROM job_queue.jobs j
                    WHERE j.kind = k AND j.concurrency_key = cand.concurrency_key AND j.state = 'running'
                    LIMIT lim) r;
                -- Full under this replica's limit: rightly parked.
                CONTINUE WHEN running >= lim;
            END IF;
            INSERT INTO job_queue.concurrency_keys AS c (kind, concurrency_key, priority, head_run_at, head_id)
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

COMMENT ON FUNCTION job_queue.repair_concurrency_keys(kinds text[], keyed_kinds text[], key_limits integer[], max_keys integer) IS 'The reconciler: mends key rows left missing, late or parked below their limit; returns what it mended.';

CREATE FUNCTION job_queue.requeue_dead_letter(dead_letter_id bigint) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
DECLARE
    d job_queue.dead_letter_jobs;
    new_id bigint;
BEGIN
    SELECT * INTO d FROM job_queue.dead_letter_jobs WHERE id = dead_letter_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dead letter % does not exist', dead_letter_id USING ERRCODE = 'no_data_found';
    END IF;
    IF d.requeued_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was already requeued as job %', dead_letter_id, d.requeued_job_id
            USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO job_queue.jobs (kind, payload, priority, max_attempts, unique_key, concurrency_key)
    VALUES (d.kind, d.payload, d.priority, d.max_attempts, d.unique_key, d.concurrency_key)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        RAISE EXCEPTION 'a job with unique key % is already queued', d.unique_key USING ERRCODE = 'unique_violation';
    END IF;
    UPDATE job_queue.dead_letter_jobs SET requeued_at = now(), requeued_job_id = new_id WHERE id = dead_letter_id;
    RETURN new_id;
END;
$$;

CREATE FUNCTION job_queue.run_dead_lettered_hook() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    hook_function text;
    proc regprocedure;
BEGIN
    SELECT h.function INTO hook_function FROM job_queue.kind_hooks h
    WHERE h.kind = NEW.kind AND h.event = 'dead_lettered';
    IF hook_function IS NULL THEN
        RETURN NULL;
    END IF;
    proc := job_queue.hook_procedure(hook_function, '(bigint, jsonb, text)');
    IF proc IS NULL THEN
        RAISE WARNING 'job queue: the dead_lettered hook of kind % (%) is not a function of the schema''s owner; skipped',
            NEW.kind, hook_function;
        RETURN NULL;
    END IF;
    EXECUTE pg_catalog.format('SELECT %s($1, $2, $3)', proc::oid::regproc) USING NEW.job_id, NEW.payload, NEW.last_error;
    RETURN NULL;
END;
$_$;

CREATE FUNCTION job_queue.run_inserted_hooks() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    hook record;
    proc regprocedure;
    job record;
BEGIN
    FOR hook IN
        SELECT h.kind, h.function FROM job_queue.kind_hooks h
        WHERE h.event = 'inserted' AND EXISTS (SELECT 1 FROM inserted_jobs i WHERE i.kind = h.kind)
    LOOP
        proc := job_queue.hook_procedure(hook.function, '(bigint, jsonb)');
        IF proc IS NULL THEN
            RAISE WARNING 'job queue: the inserted hook of kind % (%) is not a function of the schema''s owner; skipped',
                hook.kind, hook.function;
            CONTINUE;
        END IF;
        FOR job IN SELECT i.id, i.payload FROM inserted_jobs i WHERE i.kind = hook.kind ORDER BY i.id LOOP
            EXECUTE pg_catalog.format('SELECT %s($1, $2)', proc::oid::regproc) USING job.id, job.payload;
        END LOOP;
    END LOOP;
    RETURN NULL;
END;
$_$;

CREATE FUNCTION job_queue.set_concurrency_key_limit(kind text, concurrency_key text, max_running integer) RETURNS integer
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_variable
DECLARE
    old integer;
    was_ordered boolean;
BEGIN
    IF max_running IS NOT NULL AND max_running < 0 THEN
        RAISE EXCEPTION 'a concurrency key''s limit must be 0 or more, not %', max_running
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT l.max_running, l.ordered INTO old, was_ordered FROM job_queue.concurrency_key_limits l
    WHERE l.kind = set_concurrency_key_limit.kind AND l.concurrency_key = set_concurrency_key_limit.concurrency_key
    FOR UPDATE;
    IF max_running IS NULL AND was_ordered THEN
        UPDATE job_queue.concurrency_key_limits l SET max_running = NULL, updated_at = now()
        WHERE l.kind = set_concurrency_key_limit.kind
          AND l.concurrency_key = set_concurrency_key_limit.concurrency_key AND l.max_running IS NOT NULL;
    ELSIF max_running IS NULL THEN
        DELETE FROM job_queue.concurrency_key_limits l
        WHERE l.kind = set_concurrency_key_limit.kind
          AND l.concurrency_key = set_concurrency_key_limit.concurrency_key;
    ELSIF old IS DISTINCT FROM max_running THEN
        INSERT INTO job_queue.concurrency_key_limits AS l (kind, concurrency_key, max_running)
        VALUES (set_concurrency_key_limit.kind, set_concurrency_key_limit.concurrency_key, max_running)
        ON CONFLICT ON CONSTRAINT concurrency_key_limits_pkey DO UPDATE
        SET max_running = excluded.max_running, updated_at = now();
    END IF;
    IF old IS NULL OR max_running IS NULL OR max_running > old THEN
        INSERT INTO job_queue.concurrency_key_wakeups (kind, concurrency_key)
        VALUES (set_concurrency_key_limit.kind, set_concurrency_key_limit.concurrency_key);
        PERFORM pg_notify('job_queue_jobs', '');
    END IF;
    RETURN old;
END;
$$;

CREATE FUNCTION job_queue.set_concurrency_key_ordered(kind text, concurrency_key text, ordered boolean) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
#variable_conflict use_variable
DECLARE
    was boolean;
    lim integer;
BEGIN
    IF ordered IS NULL THEN
        RAISE EXCEPTION 'ordered must be true or false' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT l.ordered, l.max_running INTO was, lim FROM job_queue.concurrency_key_limits l
    WHERE l.kind = set_concurrency_key_ordered.kind
      AND l.concurrency_key = set_concurrency_key_ordered.concurrency_key
    FOR UPDATE;
    was := coalesce(was, false);
    IF ordered AND NOT was THEN
        INSERT INTO job_queue.concurrency_key_limits AS l (kind, concurrency_key, max_running, ordered)
        VALUES (set_concurrency_key_ordered.kind, set_concurrency_key_ordered.concurrency_key, NULL, true)
        ON CONFLICT ON CONSTRAINT concurrency_key_limits_pkey DO UPDATE
        SET ordered = true, updated_at = now();
    ELSIF was AND NOT ordered THEN
        IF lim IS NULL THEN
            DELETE FROM job_queue.concurrency_key_limits l
            WHERE l.kind = set_concurrency_key_ordered.kind
              AND l.concurrency_key = set_concurrency_key_ordered.concurrency_key;
        ELSE
            UPDATE job_queue.concurrency_key_limits l SET ordered = false, updated_at = now()
            WHERE l.kind = set_concurrency_key_ordered.kind
              AND l.concurrency_key = set_concurrency_key_ordered.concurrency_key;
        END IF;
        INSERT INTO job_queue.concurrency_key_wakeups (kind, concurrency_key)
        VALUES (set_concurrency_key_ordered.kind, set_concurrency_key_ordered.concurrency_key);
        PERFORM pg_notify('job_queue_jobs', '');
    END IF;
    RETURN was;
END;
$$;

CREATE FUNCTION job_queue.set_kind_hook(hook_kind text, hook_event text, hook_function text) RETURNS void
    LANGUAGE plpgsql
    AS $$
DECLARE
    signature text := CASE hook_event
        WHEN 'inserted' THEN '(bigint, jsonb)'
        WHEN 'dead_lettered' THEN '(bigint, jsonb, text)'
    END;
BEGIN
    IF signature IS NULL THEN
        RAISE EXCEPTION 'unknown hook event %: expected inserted or dead_lettered', hook_event
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF hook_function IS NULL THEN
        DELETE FROM job_queue.kind_hooks WHERE kind = hook_kind AND event = hook_event;
        RETURN;
    END IF;
    IF to_regprocedure(hook_function || signature) IS NULL THEN
        RAISE EXCEPTION 'no function %', hook_function || signature
            USING ERRCODE = 'undefined_function';
    END IF;
    INSERT INTO job_queue.kind_hooks (kind, event, function) VALUES (hook_kind, hook_event, hook_function)
    ON CONFLICT (kind, event) DO UPDATE SET function = EXCLUDED.function;
END;
$$;

COMMENT ON FUNCTION job_queue.set_kind_hook(hook_kind text, hook_event text, hook_function text) IS 'Registers (or, with a NULL function, removes) the hook of a kind for an event: inserted (job_id bigint, payload jsonb) or dead_lettered (job_id bigint, payload jsonb, last_error text).';

CREATE FUNCTION job_queue.skip_duplicate_unique_key() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM job_queue.jobs WHERE unique_key = NEW.unique_key) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION job_queue.wake_deleted_concurrency_keys() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    INSERT INTO job_queue.concurrency_key_wakeups (kind, concurrency_key)
    SELECT DISTINCT d.kind, d.concurrency_key FROM deleted_jobs d
    WHERE d.state = 'running' AND d.concurrency_key IS NOT NULL
    ORDER BY 1, 2;
    RETURN NULL;
END;
$$;

CREATE FUNCTION job_queue.wake_inserted_concurrency_keys() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    INSERT INTO job_queue.concurrency_key_wakeups (kind, concurrency_key, priority, run_at, job_id)
    SELECT DISTINCT ON (kind, concurrency_key, priority) kind, concurrency_key, priority, run_at, id
    FROM inserted_jobs
    WHERE state = 'available' AND concurrency_key IS NOT NULL
    ORDER BY kind, concurrency_key, priority, run_at, id;
    RETURN NULL;
END;
$$;

CREATE FUNCTION job_queue.wake_ordered_concurrency_key() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM job_queue.concurrency_key_limits l
               WHERE l.kind = OLD.kind AND l.concurrency_key = OLD.concurrency_key AND l.ordered) THEN
        INSERT INTO job_queue.concurrency_key_wakeups (kind, concurrency_key) VALUES (OLD.kind, OLD.concurrency_key);
        PERFORM pg_notify('job_queue_jobs', '');
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION job_queue.wake_snoozed(job_kind text, key text, reason_prefix text) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    woken integer;
BEGIN
    UPDATE job_queue.jobs SET run_at = now()
    WHERE kind = job_kind AND concurrency_key = key AND state = 'available' AND run_at > now()
      AND starts_with(last_error, reason_prefix);
    GET DIAGNOSTICS woken = ROW_COUNT;
    IF woken > 0 THEN
        PERFORM pg_notify('job_queue_jobs', '');
    END IF;
    RETURN woken;
END;
$$;

COMMENT ON FUNCTION job_queue.wake_snoozed(job_kind text, key text, reason_prefix text) IS 'Runs now the waiting jobs of a kind and concurrency key whose last_error starts with reason_prefix; returns how many.';

CREATE FUNCTION job_queue.wake_updated_concurrency_key() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF NEW.state = 'available' AND NEW.concurrency_key IS NOT NULL THEN
        INSERT INTO job_queue.concurrency_key_wakeups (kind, concurrency_key, priority, run_at, job_id)
        VALUES (NEW.kind, NEW.concurrency_key, NEW.priority, NEW.run_at, NEW.id);
    END IF;
    IF OLD.state = 'running' AND OLD.concurrency_key IS NOT NULL THEN
        INSERT INTO job_queue.concurrency_key_wakeups (kind, concurrency_key) VALUES (OLD.kind, OLD.concurrency_key);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TABLE job_queue.jobs (
    id bigint NOT NULL,
    kind text NOT NULL,
    payload jsonb DEFAULT '{}'::jsonb NOT NULL,
    priority smallint DEFAULT 0 NOT NULL,
    run_at timestamp with time zone DEFAULT now() NOT NULL,
    attempt integer DEFAULT 0 NOT NULL,
    max_attempts integer,
    state text DEFAULT 'available'::text NOT NULL,
    locked_by text,
    locked_until timestamp with time zone,
    attempted_at timestamp with time zone,
    unique_key text,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    released integer DEFAULT 0 NOT NULL,
    concurrency_key text,
    trace_context text,
    CONSTRAINT jobs_attempt_check CHECK ((attempt >= 0)),
    CONSTRAINT jobs_concurrency_key_check CHECK (((concurrency_key <> ''::text) AND (length(concurrency_key) <= 500))),
    CONSTRAINT jobs_kind_check CHECK (((kind <> ''::text) AND (length(kind) <= 200))),
    CONSTRAINT jobs_max_attempts_check CHECK (((max_attempts IS NULL) OR (max_attempts >= 1))),
    CONSTRAINT jobs_released_check CHECK ((released >= 0)),
    CONSTRAINT jobs_running_is_locked CHECK (((state <> 'running'::text) OR ((locked_by IS NOT NULL) AND (locked_until IS NOT NULL)))),
    CONSTRAINT jobs_state_check CHECK ((state = ANY (ARRAY['available'::text, 'running'::text])))
)
WITH (autovacuum_vacuum_scale_factor='0.0', autovacuum_vacuum_threshold='1000', autovacuum_vacuum_insert_scale_factor='0.0', autovacuum_vacuum_insert_threshold='5000', autovacuum_analyze_scale_factor='0.02', autovacuum_vacuum_cost_delay='0', fillfactor='80');

COMMENT ON TABLE job_queue.jobs IS 'The queue. Insert (kind, payload); everything else has a default. Finished jobs leave this table: see job_attempts and dead_letter_jobs.';

COMMENT ON COLUMN job_queue.jobs.concurrency_key IS 'Optional. Jobs of one kind with the same key share that kind''s per-key limit (when the worker sets one).';

COMMENT ON COLUMN job_queue.jobs.trace_context IS 'Optional W3C traceparent (then a space and a tracestate, if any) of the request that enqueued the job; its attempts'' spans continue that trace. Handlers copy it to the jobs they enqueue.';

CREATE VIEW job_queue.concurrency_key_depth AS
 SELECT jobs.kind,
    jobs.concurrency_key,
    count(*) FILTER (WHERE (jobs.state = 'running'::text)) AS running,
    count(*) FILTER (WHERE ((jobs.state = 'available'::text) AND (jobs.run_at <= now()))) AS waiting,
    count(*) FILTER (WHERE ((jobs.state = 'available'::text) AND (jobs.run_at > now()))) AS scheduled,
    min(jobs.run_at) FILTER (WHERE ((jobs.state = 'available'::text) AND (jobs.run_at <= now()))) AS oldest_run_at
   FROM job_queue.jobs
  WHERE (jobs.concurrency_key IS NOT NULL)
  GROUP BY jobs.kind, jobs.concurrency_key;

CREATE TABLE job_queue.concurrency_key_limits (
    kind text NOT NULL,
    concurrency_key text NOT NULL,
    max_running integer,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    ordered boolean DEFAULT false NOT NULL,
    CONSTRAINT concurrency_key_limits_limit_or_ordered CHECK (((max_running IS NOT NULL) OR ordered)),
    CONSTRAINT concurrency_key_limits_max_running_check CHECK ((max_running >= 0))
);

COMMENT ON TABLE job_queue.concurrency_key_limits IS 'Per-key limits that override the kind''s (the worker''s key_limits), and ordered keys. Change them with set_concurrency_key_limit() and set_concurrency_key_ordered().';

COMMENT ON COLUMN job_queue.concurrency_key_limits.max_running IS 'The key''s own limit; NULL (only on an ordered key): the kind''s.';

COMMENT ON COLUMN job_queue.concurrency_key_limits.ordered IS 'Ordered key: one job at a time, the oldest (lowest id) first; a retrying oldest job holds the others.';

CREATE VIEW job_queue.concurrency_key_status AS
 SELECT COALESCE(d.kind, l.kind) AS kind,
    COALESCE(d.concurrency_key, l.concurrency_key) AS concurrency_key,
    l.max_running,
    COALESCE(l.ordered, false) AS ordered,
    COALESCE(d.running, (0)::bigint) AS running,
    COALESCE(d.waiting, (0)::bigint) AS waiting,
    COALESCE(d.scheduled, (0)::bigint) AS scheduled,
    d.oldest_run_at
   FROM (job_queue.concurrency_key_depth d
     FULL JOIN job_queue.concurrency_key_limits l USING (kind, concurrency_key));

COMMENT ON VIEW job_queue.concurrency_key_status IS 'Per kind and concurrency key: its own limit (NULL: the kind''s) and ordering, with the jobs running, waiting and scheduled now.';

CREATE TABLE job_queue.concurrency_key_wakeups (
    id bigint NOT NULL,
    kind text NOT NULL,
    concurrency_key text NOT NULL,
    priority smallint,
    run_at timestamp with time zone,
    job_id bigint
)
WITH (autovacuum_vacuum_scale_factor='0.0', autovacuum_vacuum_threshold='1000', autovacuum_vacuum_insert_scale_factor='0.0', autovacuum_vacuum_insert_threshold='5000', autovacuum_vacuum_cost_delay='0');

COMMENT ON TABLE job_queue.concurrency_key_wakeups IS 'Claim bookkeeping: keyed jobs that became waiting, or stopped running, since the last claims.';

ALTER TABLE job_queue.concurrency_key_wakeups ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME job_queue.concurrency_key_wakeups_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE job_queue.concurrency_keys (
    kind text NOT NULL,
    concurrency_key text NOT NULL,
    priority smallint NOT NULL,
    head_run_at timestamp with time zone NOT NULL,
    head_id bigint NOT NULL
)
WITH (autovacuum_vacuum_scale_factor='0.0', autovacuum_vacuum_threshold='1000', autovacuum_analyze_scale_factor='0.02', autovacuum_vacuum_cost_delay='0');

COMMENT ON TABLE job_queue.concurrency_keys IS 'Claim bookkeeping: keys that may have waiting jobs, by their first one per priority (infinity: parked while full). Rebuild with job_queue.rebuild_concurrency_keys().';

CREATE TABLE job_queue.dead_letter_jobs (
    id bigint NOT NULL,
    job_id bigint NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    priority smallint NOT NULL,
    attempts integer NOT NULL,
    max_attempts integer NOT NULL,
    reason text NOT NULL,
    last_error text,
    unique_key text,
    created_at timestamp with time zone NOT NULL,
    dead_at timestamp with time zone DEFAULT now() NOT NULL,
    requeued_at timestamp with time zone,
    requeued_job_id bigint,
    concurrency_key text,
    CONSTRAINT dead_letter_jobs_reason_check CHECK ((reason ~ '^[a-z][a-z0-9_]*$'::text))
);

COMMENT ON TABLE job_queue.dead_letter_jobs IS 'Jobs that gave up. last_error says why in words. Put one back with SELECT job_queue.requeue_dead_letter(id).';

ALTER TABLE job_queue.dead_letter_jobs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME job_queue.dead_letter_jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE job_queue.dead_letter_reasons (
    reason text NOT NULL,
    description text NOT NULL,
    CONSTRAINT dead_letter_reasons_reason_check CHECK ((reason ~ '^[a-z][a-z0-9_]*$'::text))
);

COMMENT ON TABLE job_queue.dead_letter_reasons IS 'The reasons a dead letter may give (dead_letter_jobs.reason), and what each means. Add one with add_dead_letter_reason(reason, description).';

CREATE VIEW job_queue.dead_letters_by_reason AS
 SELECT dead_letter_jobs.kind,
    dead_letter_jobs.reason,
    count(*) AS dead_letters,
    min(dead_letter_jobs.dead_at) AS first_dead_at,
    max(dead_letter_jobs.dead_at) AS last_dead_at
   FROM job_queue.dead_letter_jobs
  WHERE (dead_letter_jobs.requeued_at IS NULL)
  GROUP BY dead_letter_jobs.kind, dead_letter_jobs.reason;

CREATE TABLE job_queue.history_detaching (
    table_schema name NOT NULL,
    partition_name name NOT NULL,
    table_name name NOT NULL,
    since timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE job_queue.history_tables (
    table_schema name NOT NULL,
    table_name name NOT NULL,
    partition_column name NOT NULL,
    unique_keys text[] DEFAULT '{}'::text[] NOT NULL,
    storage text,
    legacy_until timestamp with time zone
);

COMMENT ON TABLE job_queue.history_tables IS 'History tables partitioned by time; their partitions are created ahead and dropped past retention by the replicas.';

CREATE VIEW job_queue.history_partitions AS
 SELECT h.table_schema,
    h.table_name,
    c.relname AS partition_name,
    job_queue.history_bound("substring"(b.expr, 'FROM \((.*)\) TO'::text)) AS from_at,
    job_queue.history_bound("substring"(b.expr, 'TO \((.*)\)$'::text)) AS to_at,
    i.inhdetachpending AS detach_pending,
    pg_total_relation_size((c.oid)::regclass) AS bytes
   FROM (((((job_queue.history_tables h
     JOIN pg_namespace n ON ((n.nspname = h.table_schema)))
     JOIN pg_class p ON (((p.relnamespace = n.oid) AND (p.relname = h.table_name) AND (p.relkind = 'p'::"char"))))
     JOIN pg_inherits i ON ((i.inhparent = p.oid)))
     JOIN pg_class c ON ((c.oid = i.inhrelid)))
     CROSS JOIN LATERAL ( SELECT pg_get_expr(c.relpartbound, c.oid) AS expr) b);

COMMENT ON VIEW job_queue.history_partitions IS 'The partitions of the history tables, with their bounds and sizes.';

CREATE TABLE job_queue.job_attempts (
    id bigint NOT NULL,
    job_id bigint NOT NULL,
    kind text NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone DEFAULT now() NOT NULL,
    outcome text NOT NULL,
    error text,
    CONSTRAINT job_attempts_outcome_check CHECK ((outcome = ANY (ARRAY['succeeded'::text, 'failed'::text, 'lost'::text, 'released'::text, 'cancelled'::text])))
)
PARTITION BY RANGE (finished_at);

COMMENT ON TABLE job_queue.job_attempts IS 'One row per attempt of any job, written when the attempt ends. Pruned by age.';

ALTER TABLE job_queue.job_attempts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME job_queue.job_attempts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE job_queue.job_attempts_legacy (
    id bigint NOT NULL,
    job_id bigint NOT NULL,
    kind text NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone DEFAULT now() NOT NULL,
    outcome text NOT NULL,
    error text,
    CONSTRAINT job_attempts_outcome_check CHECK ((outcome = ANY (ARRAY['succeeded'::text, 'failed'::text, 'lost'::text, 'released'::text, 'cancelled'::text])))
);

COMMENT ON TABLE job_queue.job_attempts_legacy IS 'One row per attempt of any job, written when the attempt ends. Pruned by age.';

ALTER TABLE job_queue.jobs ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME job_queue.jobs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE job_queue.kind_hooks (
    kind text NOT NULL,
    event text NOT NULL,
    function text NOT NULL,
    CONSTRAINT kind_hooks_event_check CHECK ((event = ANY (ARRAY['inserted'::text, 'dead_lettered'::text])))
);

COMMENT ON TABLE job_queue.kind_hooks IS 'Functions the queue calls when a job of a kind is inserted or dead-lettered. Set with set_kind_hook(kind, event, function).';

CREATE VIEW job_queue.oldest_waiting AS
 SELECT jobs.kind,
    count(*) AS waiting,
    min(jobs.run_at) AS oldest_run_at,
    (now() - min(jobs.run_at)) AS wait
   FROM job_queue.jobs
  WHERE ((jobs.state = 'available'::text) AND (jobs.run_at <= now()))
  GROUP BY jobs.kind;

CREATE TABLE job_queue.paused_kinds (
    kind text NOT NULL,
    paused_at timestamp with time zone DEFAULT now() NOT NULL,
    paused_by text
);

CREATE VIEW job_queue.queue_depth AS
 SELECT jobs.kind,
        CASE
            WHEN (jobs.state = 'running'::text) THEN 'running'::text
            WHEN ((jobs.run_at > now()) AND (jobs.attempt > 0)) THEN 'retrying'::text
            WHEN (jobs.run_at > now()) THEN 'scheduled'::text
            ELSE 'available'::text
        END AS state,
    count(*) AS jobs,
    min(jobs.run_at) AS oldest_run_at,
    (now() - min(jobs.run_at)) AS oldest_age
   FROM job_queue.jobs
  GROUP BY jobs.kind,
        CASE
            WHEN (jobs.state = 'running'::text) THEN 'running'::text
            WHEN ((jobs.run_at > now()) AND (jobs.attempt > 0)) THEN 'retrying'::text
            WHEN (jobs.run_at > now()) THEN 'scheduled'::text
            ELSE 'available'::text
        END;

CREATE TABLE job_queue.schema_migrations (
    owner text NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE ONLY job_queue.job_attempts ATTACH PARTITION job_queue.job_attempts_legacy FOR VALUES FROM (MINVALUE) TO ('<a UTC midnight>');

ALTER TABLE ONLY job_queue.concurrency_key_limits
    ADD CONSTRAINT concurrency_key_limits_pkey PRIMARY KEY (kind, concurrency_key);

ALTER TABLE ONLY job_queue.concurrency_key_wakeups
    ADD CONSTRAINT concurrency_key_wakeups_pkey PRIMARY KEY (id);

ALTER TABLE ONLY job_queue.concurrency_keys
    ADD CONSTRAINT concurrency_keys_pkey PRIMARY KEY (kind, concurrency_key, priority);

ALTER TABLE ONLY job_queue.dead_letter_jobs
    ADD CONSTRAINT dead_letter_jobs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY job_queue.dead_letter_reasons
    ADD CONSTRAINT dead_letter_reasons_pkey PRIMARY KEY (reason);

ALTER TABLE ONLY job_queue.history_detaching
    ADD CONSTRAINT history_detaching_pkey PRIMARY KEY (table_schema, partition_name);

ALTER TABLE ONLY job_queue.history_tables
    ADD CONSTRAINT history_tables_pkey PRIMARY KEY (table_schema, table_name);

ALTER TABLE ONLY job_queue.job_attempts_legacy
    ADD CONSTRAINT job_attempts_pkey PRIMARY KEY (id);

ALTER TABLE ONLY job_queue.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY job_queue.kind_hooks
    ADD CONSTRAINT kind_hooks_pkey PRIMARY KEY (kind, event);

ALTER TABLE ONLY job_queue.paused_kinds
    ADD CONSTRAINT paused_kinds_pkey PRIMARY KEY (kind);

ALTER TABLE ONLY job_queue.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (owner, version);

CREATE INDEX concurrency_keys_head_idx ON job_queue.concurrency_keys USING btree (kind, priority, head_run_at, head_id);

CREATE INDEX dead_letter_jobs_dead_at_idx ON job_queue.dead_letter_jobs USING btree (dead_at);

CREATE INDEX dead_letter_jobs_job_idx ON job_queue.dead_letter_jobs USING btree (job_id);

CREATE INDEX dead_letter_jobs_open_idx ON job_queue.dead_letter_jobs USING btree (kind, dead_at) WHERE (requeued_at IS NULL);

CREATE INDEX job_attempts_finished_idx ON ONLY job_queue.job_attempts USING btree (finished_at);

CREATE INDEX job_attempts_finished_idx_legacy ON job_queue.job_attempts_legacy USING btree (finished_at);

CREATE INDEX job_attempts_job_idx ON ONLY job_queue.job_attempts USING btree (job_id, attempt);

CREATE INDEX job_attempts_job_idx_legacy ON job_queue.job_attempts_legacy USING btree (job_id, attempt);

CREATE INDEX jobs_claim_keyed_idx ON job_queue.jobs USING btree (kind, concurrency_key, priority, run_at, id) WHERE ((state = 'available'::text) AND (concurrency_key IS NOT NULL));

CREATE INDEX jobs_claim_unkeyed_idx ON job_queue.jobs USING btree (priority, run_at, id) WHERE ((state = 'available'::text) AND (concurrency_key IS NULL));

CREATE INDEX jobs_lease_idx ON job_queue.jobs USING btree (locked_until) WHERE (state = 'running'::text);

CREATE INDEX jobs_running_key_idx ON job_queue.jobs USING btree (kind, concurrency_key) WHERE ((state = 'running'::text) AND (concurrency_key IS NOT NULL));

CREATE UNIQUE INDEX jobs_unique_key_idx ON job_queue.jobs USING btree (unique_key) WHERE (unique_key IS NOT NULL);

ALTER INDEX job_queue.job_attempts_finished_idx ATTACH PARTITION job_queue.job_attempts_finished_idx_legacy;

ALTER INDEX job_queue.job_attempts_job_idx ATTACH PARTITION job_queue.job_attempts_job_idx_legacy;

CREATE TRIGGER dead_letter_jobs_run_hook AFTER INSERT ON job_queue.dead_letter_jobs FOR EACH ROW EXECUTE FUNCTION job_queue.run_dead_lettered_hook();

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON job_queue.jobs REFERENCING NEW TABLE AS inserted_jobs FOR EACH STATEMENT EXECUTE FUNCTION job_queue.notify_jobs_inserted();

CREATE TRIGGER jobs_run_inserted_hooks AFTER INSERT ON job_queue.jobs REFERENCING NEW TABLE AS inserted_jobs FOR EACH STATEMENT EXECUTE FUNCTION job_queue.run_inserted_hooks();

CREATE TRIGGER jobs_skip_duplicate_unique_key BEFORE INSERT ON job_queue.jobs FOR EACH ROW WHEN (((new.unique_key IS NOT NULL) AND ((pg_trigger_depth() > 0) OR (current_setting('job_queue.fresh_unique_keys'::text, true) IS DISTINCT FROM 'on'::text)))) EXECUTE FUNCTION job_queue.skip_duplicate_unique_key();

CREATE TRIGGER jobs_wake_concurrency_keys_delete AFTER DELETE ON job_queue.jobs REFERENCING OLD TABLE AS deleted_jobs FOR EACH STATEMENT EXECUTE FUNCTION job_queue.wake_deleted_concurrency_keys();

CREATE TRIGGER jobs_wake_concurrency_keys_insert AFTER INSERT ON job_queue.jobs REFERENCING NEW TABLE AS inserted_jobs FOR EACH STATEMENT EXECUTE FUNCTION job_queue.wake_inserted_concurrency_keys();

CREATE TRIGGER jobs_wake_concurrency_keys_update AFTER UPDATE ON job_queue.jobs FOR EACH ROW WHEN ((((new.state = 'available'::text) AND (new.concurrency_key IS NOT NULL) AND ((old.state <> 'available'::text) OR (old.kind <> new.kind) OR (old.priority <> new.priority) OR (old.concurrency_key IS DISTINCT FROM new.concurrency_key) OR (new.run_at < old.run_at))) OR ((old.state = 'running'::text) AND (old.concurrency_key IS NOT NULL) AND ((new.state <> 'running'::text) OR (old.kind <> new.kind) OR (old.concurrency_key IS DISTINCT FROM new.concurrency_key))))) EXECUTE FUNCTION job_queue.wake_updated_concurrency_key();

CREATE TRIGGER jobs_wake_ordered_keys_delete AFTER DELETE ON job_queue.jobs FOR EACH ROW WHEN (((old.state = 'available'::text) AND (old.concurrency_key IS NOT NULL))) EXECUTE FUNCTION job_queue.wake_ordered_concurrency_key();

CREATE TRIGGER jobs_wake_ordered_keys_move AFTER UPDATE OF kind, concurrency_key ON job_queue.jobs FOR EACH ROW WHEN (((old.state = 'available'::text) AND (old.concurrency_key IS NOT NULL) AND ((old.kind <> new.kind) OR (old.concurrency_key IS DISTINCT FROM new.concurrency_key)))) EXECUTE FUNCTION job_queue.wake_ordered_concurrency_key();

CREATE TRIGGER paused_kinds_notify AFTER INSERT OR DELETE ON job_queue.paused_kinds FOR EACH STATEMENT EXECUTE FUNCTION job_queue.notify_paused_kinds();

ALTER TABLE ONLY job_queue.dead_letter_jobs
    ADD CONSTRAINT dead_letter_jobs_reason_fkey FOREIGN KEY (reason) REFERENCES job_queue.dead_letter_reasons(reason);
