-- Operator limits per endpoint (issue 22, point 2): a fixed limit on deliveries in flight that
-- overrides the adaptive one while it is set, and a rate limit in requests per second, a token
-- bucket kept on the endpoint's row so that it holds across replicas.
--
-- The fixed limit reaches the claim the way the adaptive one does, as the key's limit in the
-- queue's concurrency_key_limits, through one function, endpoint_apply_limit(): the operator's
-- max_in_flight when set, otherwise the adaptive limit (endpoint_concurrency.applied), otherwise
-- none of the key's own (the kind's). endpoints_adapt() now goes through it too, so an adaptation
-- never overrides the operator. The two serialize on the endpoint's row: the adaptation takes it
-- FOR KEY SHARE, a change of limits FOR UPDATE; the token bucket's updates (FOR NO KEY UPDATE)
-- wait for neither.
--
-- The bucket: rate_tokens tokens at rate_tokens_at, refilled rate_limit per second up to a burst
-- of max(1, rate_limit). A delivery takes one before its request is sent; one that finds none is
-- not sent and spends no attempt (the handler snoozes it). Held deliveries are told to come back
-- one token apart (rate_next_slot), not all at the next token, so a backlog does not wake in a
-- herd that one token can serve. Endpoints without a rate limit never call it.

ALTER TABLE webhook_worker.endpoints
    ADD COLUMN max_in_flight integer CHECK (max_in_flight BETWEEN 1 AND 10000),
    ADD COLUMN rate_limit double precision CHECK (rate_limit > 0 AND rate_limit <= 100000),
    ADD COLUMN rate_tokens double precision,
    ADD COLUMN rate_tokens_at timestamptz,
    ADD COLUMN rate_next_slot timestamptz,
    ADD COLUMN limits_set_by text,
    ADD COLUMN limits_set_at timestamptz;

COMMENT ON COLUMN webhook_worker.endpoints.max_in_flight IS
    'Operator''s fixed limit on deliveries in flight across replicas; overrides the adaptive limit while set (NULL: adaptive).';
COMMENT ON COLUMN webhook_worker.endpoints.rate_limit IS
    'Operator''s rate limit in requests per second (a token bucket, burst max(1, rate_limit)); NULL: none.';
COMMENT ON COLUMN webhook_worker.endpoints.rate_tokens IS
    'The rate limit''s bucket: tokens left at rate_tokens_at (NULL: full).';
COMMENT ON COLUMN webhook_worker.endpoints.rate_next_slot IS
    'When the next delivery held by the rate limit is told to come back (held deliveries come back one token apart).';

-- The key's limit in the queue for the endpoint, from the operator's fixed limit or the adaptive
-- one (`adaptive`: the whole adaptive limit, NULL for none). Called by endpoints_adapt() when the
-- adaptive limit changes and by endpoint_set_limits(). Returns the limit given to the queue.
CREATE FUNCTION webhook_worker.endpoint_apply_limit(endpoint_key text, adaptive integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    fixed integer;
BEGIN
    -- KEY SHARE: waits for a change of limits in progress (FOR UPDATE) and then reads what it
    -- committed; the token bucket's updates do not wait for it.
    SELECT e.max_in_flight INTO fixed FROM webhook_worker.endpoints e WHERE e.key = endpoint_key FOR KEY SHARE;
    PERFORM webhook_worker.set_concurrency_key_limit('webhook.deliver', endpoint_key, coalesce(fixed, adaptive));
    RETURN coalesce(fixed, adaptive);
END;
$$;

-- endpoints_adapt of 013, with the key's limit applied through endpoint_apply_limit().
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
            PERFORM webhook_worker.endpoint_apply_limit(o.key, whole);
        END IF;
    END LOOP;
END;
$$;

-- Sets an endpoint's operator limits: max_in_flight when set_max (NULL clears it: adaptive
-- again), rate_limit when set_rate (NULL clears it). Records who and when, applies the key's
-- limit at once, refills the bucket when the rate changes, and wakes the endpoint's held
-- deliveries when a limit was loosened, so that they need not wait out their snooze. Returns the
-- endpoint's row.
CREATE FUNCTION webhook_worker.endpoint_set_limits(
    endpoint_key text, set_max boolean, new_max integer, set_rate boolean, new_rate double precision, actor text
) RETURNS webhook_worker.endpoints
LANGUAGE plpgsql AS $$
DECLARE
    old webhook_worker.endpoints;
    e webhook_worker.endpoints;
BEGIN
    INSERT INTO webhook_worker.endpoints (key) VALUES (endpoint_key) ON CONFLICT (key) DO NOTHING;
    SELECT * INTO old FROM webhook_worker.endpoints x WHERE x.key = endpoint_key FOR UPDATE;
    UPDATE webhook_worker.endpoints x
    SET max_in_flight = CASE WHEN set_max THEN new_max ELSE x.max_in_flight END,
        rate_limit = CASE WHEN set_rate THEN new_rate ELSE x.rate_limit END,
        rate_tokens = CASE WHEN set_rate AND new_rate IS DISTINCT FROM x.rate_limit THEN NULL ELSE x.rate_tokens END,
        rate_tokens_at = CASE WHEN set_rate AND new_rate IS DISTINCT FROM x.rate_limit THEN NULL
                              ELSE x.rate_tokens_at END,
        rate_next_slot = CASE WHEN set_rate AND new_rate IS DISTINCT FROM x.rate_limit THEN NULL
                              ELSE x.rate_next_slot END,
        limits_set_by = actor, limits_set_at = now(), updated_at = now()
    WHERE x.key = endpoint_key
    RETURNING * INTO e;
    PERFORM webhook_worker.endpoint_apply_limit(
        endpoint_key, (SELECT c.applied FROM webhook_worker.endpoint_concurrency c WHERE c.key = endpoint_key));
    IF (e.rate_limit IS NULL AND old.rate_limit IS NOT NULL) OR e.rate_limit > old.rate_limit THEN
        PERFORM webhook_worker.wake_endpoint(endpoint_key);
    END IF;
    RETURN e;
END;
$$;

-- Takes one token of the endpoint's bucket. Returns 0 when it took one (send now), otherwise the
-- seconds the delivery should wait (it was not sent; it comes back one token after the delivery
-- held before it). NULL when the endpoint has no rate limit (send).
CREATE FUNCTION webhook_worker.endpoint_take_token(endpoint_key text) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    e webhook_worker.endpoints;
    t timestamptz;
    burst double precision;
    available double precision;
    due timestamptz;
    slot timestamptz;
BEGIN
    SELECT * INTO e FROM webhook_worker.endpoints x WHERE x.key = endpoint_key FOR NO KEY UPDATE;
    IF NOT FOUND OR e.rate_limit IS NULL THEN
        RETURN NULL;
    END IF;
    -- Read after the row's lock: the time the token is taken at.
    t := clock_timestamp();
    burst := greatest(1, e.rate_limit);
    available := least(burst, coalesce(e.rate_tokens, burst)
        + e.rate_limit * greatest(0, extract(epoch FROM t - coalesce(e.rate_tokens_at, t))));
    IF available >= 1 THEN
        UPDATE webhook_worker.endpoints x
        SET rate_tokens = available - 1, rate_tokens_at = greatest(t, coalesce(x.rate_tokens_at, t))
        WHERE x.key = endpoint_key;
        RETURN 0;
    END IF;
    -- No token: when the next one is due, or one token after the last delivery held, if later.
    due := t + (1 - available) / e.rate_limit * interval '1 second';
    slot := greatest(due, coalesce(e.rate_next_slot, due));
    UPDATE webhook_worker.endpoints x
    SET rate_tokens = available, rate_tokens_at = greatest(t, coalesce(x.rate_tokens_at, t)),
        rate_next_slot = slot + interval '1 second' / e.rate_limit
    WHERE x.key = endpoint_key;
    RETURN extract(epoch FROM slot - t);
END;
$$;
