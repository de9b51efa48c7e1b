-- Adaptive concurrency per endpoint (issue 22, point 1). Each endpoint's limit on deliveries in
-- flight moves with how it answers, by the rule of WebhookDelivery's AdaptiveLimit (AIMD with a
-- latency guard; docs/operations.md says why): +1 for a 2xx within its usual latency, held for a
-- slower 2xx, halved (to the floor) for a timeout, a connection error, 5xx, 408 or 429. The
-- state is one row per endpoint that has had an outcome, updated in the transaction that records
-- the outcome, so every replica adapts the same limit; when its whole number changes, the queue
-- is told through job_queue's set_concurrency_key_limit(), which the claim obeys instead of the
-- kind's fixed limit (sql/job_queue/010).

CREATE TABLE webhook_worker.endpoint_concurrency (
    key         text             PRIMARY KEY,
    -- The limit as a real number; the claim obeys its whole part, between floor and ceiling.
    limit_value double precision NOT NULL,
    -- The smoothed latency of its 2xx answers, in milliseconds.
    latency_ms  double precision,
    -- The whole limit last given to the queue.
    applied     integer,
    updated_at  timestamptz      NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_worker.endpoint_concurrency IS
    'Adaptive concurrency limit per webhook endpoint (AIMD); the queue obeys it through concurrency_key_limits.';

-- Applies one batch of outcomes: keys[i] said signals[i] ('answered' after durations[i] ms,
-- 'overloaded' or 'neutral'). The settings come as arrays, one element per outcome (the
-- Finisher's row form); the first is used. Endpoints are locked in key order, so two replicas'
-- batches never deadlock on them. The same rule as AdaptiveLimit.record in Swift.
CREATE FUNCTION webhook_worker.endpoints_adapt(
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
        IF o.signal = 'answered' THEN
            IF lat IS NULL OR o.ms <= greatest(slow_floors[1], slow_factors[1] * lat) THEN
                v := v + 1;
            END IF;
            lat := CASE WHEN lat IS NULL THEN o.ms ELSE lat + smoothings[1] * (o.ms - lat) END;
        ELSE
            v := v * backoffs[1];
        END IF;
        v := least(greatest(v, lo::double precision), hi::double precision);
        whole := least(greatest(floor(v)::integer, lo), hi);
        UPDATE webhook_worker.endpoint_concurrency c
        SET limit_value = v, latency_ms = lat, applied = whole, updated_at = now()
        WHERE c.key = o.key;
        IF e.applied IS DISTINCT FROM whole THEN
            PERFORM webhook_worker.set_concurrency_key_limit('webhook.deliver', o.key, whole);
        END IF;
    END LOOP;
END;
$$;
