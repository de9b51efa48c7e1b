-- endpoints_adapt of 042, the same rule and the same end state, without its insert when every
-- endpoint of the batch has its row. 042 made the missing rows with one INSERT ... ON CONFLICT
-- DO NOTHING per call; with every row there (all but an endpoint's first answers), each key was
-- a speculative insert that found its conflict: 0.35 ms of the call's 1.14 ms with 16 endpoints
-- answering, 0.016 ms of the database's 0.36 ms per delivery. A read without locks now looks for
-- a missing row first, and the insert runs only when there is one.
CREATE OR REPLACE FUNCTION webhook_worker.endpoints_adapt(
    keys text[], signals text[], durations double precision[], floors integer[], initials integer[],
    ceilings integer[], slow_factors double precision[], slow_floors double precision[],
    backoffs double precision[], smoothings double precision[]
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    -- The answers that count, ordered by endpoint and, within one, as they came.
    ks text[];
    ss text[];
    ms double precision[];
    n integer;
    -- The endpoints' rows as locked, in key order: the same order as the answers' keys.
    ek text[];
    ev double precision[];
    elat double precision[];
    ecut timestamptz[];
    eapplied integer[];
    -- Index of the current endpoint in those arrays (NULL: it has no row, see below).
    j integer;
    lo integer := greatest(1, floors[1]);
    hi integer := greatest(greatest(1, floors[1]), ceilings[1]);
    v double precision;
    lat double precision;
    cut timestamptz;
    wholes integer[];
BEGIN
    SELECT array_agg(t.key ORDER BY t.key, t.n), array_agg(t.signal ORDER BY t.key, t.n),
           array_agg(t.ms ORDER BY t.key, t.n)
    INTO ks, ss, ms
    FROM unnest(keys, signals, durations) WITH ORDINALITY AS t(key, signal, ms, n)
    WHERE t.signal IN ('answered', 'overloaded') AND t.key IS NOT NULL;
    n := coalesce(cardinality(ks), 0);
    IF n = 0 THEN
        RETURN;
    END IF;
    -- An endpoint's first answer makes its row, at the initial limit. Looked for first, without
    -- a lock: nearly always every row is there, and an insert that finds each one conflicting
    -- cost a third of the call. Nothing is locked before the insert, as in 042.
    IF EXISTS (SELECT 1 FROM unnest(ks) AS k(key)
               WHERE NOT EXISTS (SELECT 1 FROM webhook_worker.endpoint_concurrency e WHERE e.key = k.key)) THEN
        INSERT INTO webhook_worker.endpoint_concurrency (key, limit_value)
        SELECT DISTINCT k.key, least(greatest(initials[1], lo), hi) FROM unnest(ks) AS k(key)
        ORDER BY 1
        ON CONFLICT (key) DO NOTHING;
    END IF;
    SELECT array_agg(c.key ORDER BY c.key), array_agg(c.limit_value ORDER BY c.key),
           array_agg(c.latency_ms ORDER BY c.key), array_agg(c.cut_at ORDER BY c.key),
           array_agg(c.applied ORDER BY c.key)
    INTO ek, ev, elat, ecut, eapplied
    FROM (SELECT e.key, e.limit_value, e.latency_ms, e.cut_at, e.applied
          FROM webhook_worker.endpoint_concurrency e
          WHERE e.key = ANY (ks)
          ORDER BY e.key
          FOR UPDATE) AS c;
    IF ek IS NULL THEN
        RETURN;
    END IF;
    wholes := array_fill(NULL::integer, ARRAY[cardinality(ek)]);
    FOR i IN 1..n LOOP
        IF i = 1 OR ks[i] <> ks[i - 1] THEN
            -- The endpoint's first answer of the batch: its row, as read. A row deleted between
            -- the insert and the read (by hand: nothing here deletes them) leaves its answers out
            -- and its limit as it is (041 applied the floor to it).
            j := array_position(ek, ks[i]);
            v := ev[j];
            lat := elat[j];
            cut := ecut[j];
        END IF;
        CONTINUE WHEN j IS NULL;
        IF ss[i] = 'answered' THEN
            IF lat IS NULL OR ms[i] <= greatest(slow_floors[1], slow_factors[1] * lat) THEN
                v := v + 1;
            END IF;
            lat := CASE WHEN lat IS NULL THEN ms[i] ELSE lat + smoothings[1] * (ms[i] - lat) END;
        ELSIF cut IS NULL OR now() - greatest(ms[i], 0) * interval '1 millisecond' >= cut THEN
            v := v * backoffs[1];
            cut := now();
        END IF;
        v := least(greatest(v, lo::double precision), hi::double precision);
        IF i = n OR ks[i + 1] <> ks[i] THEN
            -- Its last answer: the values the row gets.
            ev[j] := v;
            elat[j] := lat;
            ecut[j] := cut;
            wholes[j] := least(greatest(floor(v)::integer, lo), hi);
        END IF;
    END LOOP;
    UPDATE webhook_worker.endpoint_concurrency c
    SET limit_value = u.v, latency_ms = u.lat, applied = u.whole, cut_at = u.cut, updated_at = now()
    FROM unnest(ek, ev, elat, ecut, wholes) AS u(key, v, lat, cut, whole)
    WHERE c.key = u.key;
    -- The limits that moved, applied to the queue in key order.
    FOR i IN 1..cardinality(ek) LOOP
        IF eapplied[i] IS DISTINCT FROM wholes[i] THEN
            PERFORM webhook_worker.endpoint_apply_limit(ek[i], wholes[i]);
        END IF;
    END LOOP;
END;
$$;
