-- An endpoint that answers 429 or 503 with Retry-After is paused as a whole, not only the one
-- delivery (issue 22, point 3): no request goes to it before the time it asked for (capped by the
-- worker), and its other deliveries wait for it without spending attempts, as they do behind an
-- open circuit. The pause lives beside the circuit, on the endpoint's row, so every replica sees
-- it with the re-check it reads before each attempt.

ALTER TABLE webhook_worker.endpoints
    -- No request before this time (NULL: never paused, or the pause is over).
    ADD COLUMN paused_until      timestamptz,
    -- When the latest pause was recorded, and how long, in all, the endpoint has been paused
    -- (overlapping pauses counted once): the throttled time of its metrics.
    ADD COLUMN paused_at         timestamptz,
    ADD COLUMN throttled_seconds double precision NOT NULL DEFAULT 0;

-- Pauses the endpoint for `wait` from now, or keeps a longer pause already recorded. Returns
-- the time the endpoint is paused until.
CREATE FUNCTION webhook_worker.endpoint_pause(endpoint_key text, wait interval) RETURNS timestamptz
    LANGUAGE plpgsql
    AS $$
DECLARE
    until timestamptz := clock_timestamp() + greatest(wait, interval '0');
    e webhook_worker.endpoints;
BEGIN
    INSERT INTO webhook_worker.endpoints AS x (key, paused_until, paused_at, throttled_seconds)
    VALUES (endpoint_key, until, clock_timestamp(), extract(epoch FROM greatest(wait, interval '0')))
    ON CONFLICT (key) DO UPDATE
    SET throttled_seconds = x.throttled_seconds
            + greatest(0, extract(epoch FROM until - greatest(x.paused_until, clock_timestamp()))),
        paused_until = greatest(x.paused_until, until),
        paused_at = clock_timestamp(),
        updated_at = now()
    RETURNING * INTO e;
    RETURN e.paused_until;
END;
$$;
