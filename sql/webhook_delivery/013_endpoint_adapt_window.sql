-- The adaptive limit cuts once per window (issue 22; docs/notes/issue-22-chaos.md). Requests
-- sent together and failing together (a stall, a hang, an outage) are one sign of overload, as
-- TCP halves its window once per loss window and Netflix's concurrency-limits folds a window's
-- samples into one update: an overloaded outcome now cuts the limit only when its request was
-- sent after the last cut. Cut per outcome, the four timeouts of one stall took an endpoint from
-- 4 to 1, and the request it then sent alone met the circuit breaker's failures in a row.
-- A request was sent at the outcome's now() minus its duration: later than it really was by
-- the time between its end and the outcome's transaction, so the estimate can only make a cut
-- the old rule made, never skip one the new rule wants.

ALTER TABLE webhook_worker.endpoint_concurrency ADD COLUMN cut_at timestamptz;
COMMENT ON COLUMN webhook_worker.endpoint_concurrency.cut_at IS
    'When the limit was last cut: an overloaded outcome of a request sent before it cuts nothing more.';

CREATE OR REPLACE FUNCTION webhook_worker.endpoints_adapt(
    keys text[], signals text[], durations double precision[], floors integer[], initials integer[],
    ceilings integer[], slow_factors double precision[], slow_floors double precision[],
    backoffs double precision[], smoothings double precision[]
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o record;
    e webhook_worker.endpoint_concurrency;
    lo integer := greatest(1, floors[1]);
    hi integer := greatest(greatest(1, floors[1]), ceilings[1]);
    v double precision;
    lat double precision;
    cut timestamptz;
    whole integer;
BEGIN
    FOR o IN
        SELECT t.key, t.signal, t.ms FROM unnest(keys, signals, durations) WITH ORDINALITY AS t(key, signal, ms, n)
        WHERE t.signal IN ('answered', 'overloaded')
        ORDER BY t.key, t.n
    LOOP
        INSERT INTO webhook_worker.endpoint_concurrency (key, limit_value)
        VALUES (o.key, least(greatest(initials[1], lo), hi))
        ON CONFLICT (key) DO NOTHING;
        SELECT * INTO e FROM webhook_worker.endpoint_concurrency c WHERE c.key = o.key FOR UPDATE;
        v := e.limit_value;
        lat := e.latency_ms;
        cut := e.cut_at;
        IF o.signal = 'answered' THEN
            IF lat IS NULL OR o.ms <= greatest(slow_floors[1], slow_factors[1] * lat) THEN
                v := v + 1;
            END IF;
            lat := CASE WHEN lat IS NULL THEN o.ms ELSE lat + smoothings[1] * (o.ms - lat) END;
        ELSIF cut IS NULL OR now() - greatest(o.ms, 0) * interval '1 millisecond' >= cut THEN
            v := v * backoffs[1];
            cut := now();
        END IF;
        v := least(greatest(v, lo::double precision), hi::double precision);
        whole := least(greatest(floor(v)::integer, lo), hi);
        UPDATE webhook_worker.endpoint_concurrency c
        SET limit_value = v, latency_ms = lat, applied = whole, cut_at = cut, updated_at = now()
        WHERE c.key = o.key;
        IF e.applied IS DISTINCT FROM whole THEN
            PERFORM webhook_worker.set_concurrency_key_limit('webhook.deliver', o.key, whole);
        END IF;
    END LOOP;
END;
$$;
