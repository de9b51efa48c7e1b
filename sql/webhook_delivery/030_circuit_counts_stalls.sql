-- The circuit breaker counts the requests that fail together once (issue 22; see
-- docs/notes/issue-22-chaos.md). With the adaptive limit an endpoint's requests in flight vary
-- from 1 to 64, and "failures in a row" counted one per request meant something different at
-- each: at 64, one stall of a healthy endpoint (a pause of a few seconds) ended 64 requests
-- together and tripped the circuit at once; at 1 or 2, after a stall the next request went out
-- alone and a single failure tripped it, where with today's 4 a fast 2xx usually came back
-- first. A failure now counts towards the threshold only when its request was sent after the
-- last counted failure came back, as the adaptive limit is cut once per window
-- (webhook_delivery 013): one stall, one count. Failures one after the other count each, so an
-- endpoint that fails every request (fast 5xx, refused connections) still opens after
-- failure_threshold requests, and a hanging one after failure_threshold request timeouts.
-- A request was sent at the call's now() minus its duration: later than it really was, so the
-- estimate can only count a failure the old rule counted. Callers that pass no duration get the
-- old rule (every failure counts).

ALTER TABLE webhook_worker.endpoints ADD COLUMN counted_failure_at timestamptz;
COMMENT ON COLUMN webhook_worker.endpoints.counted_failure_at IS
    'When the last failure that counted towards the threshold came back: a failure of a request sent before it does not count again.';
COMMENT ON COLUMN webhook_worker.endpoints.consecutive_failures IS
    'Failures in a row that count towards the threshold: requests in flight together that fail together count once.';

DROP FUNCTION webhook_worker.endpoint_record(text, boolean, text, integer, interval, interval, interval);

-- Records one attempt's result against the endpoint and returns its state afterwards. A success
-- closes the circuit and forgets the failures; a failure counts (once per stall, above), opens
-- the circuit after failure_threshold in a row (or at once after a failed probe) for a
-- cool-down that doubles with each trip up to max_cooldown, and disables the endpoint once it
-- has failed for disable_after without a single success. `duration`: how long the request took.
CREATE FUNCTION webhook_worker.endpoint_record(
    endpoint_key text, succeeded boolean, error text, failure_threshold integer, cooldown interval,
    max_cooldown interval, disable_after interval, duration interval DEFAULT interval '0'
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    e webhook_worker.endpoints;
    was text;
    sent timestamptz := now() - greatest(coalesce(duration, interval '0'), interval '0');
BEGIN
    IF succeeded THEN
        SELECT state INTO was FROM webhook_worker.endpoints WHERE key = endpoint_key FOR UPDATE;
        IF NOT FOUND THEN
            RETURN 'closed';
        END IF;
        UPDATE webhook_worker.endpoints
        SET state = CASE WHEN state = 'disabled' THEN 'disabled' ELSE 'closed' END,
            consecutive_failures = 0, counted_failure_at = NULL, failing_since = NULL, trips = 0, opened_at = NULL,
            next_probe_at = NULL, probe_started_at = NULL, last_success_at = now(),
            recoveries = recoveries + CASE WHEN state IN ('open', 'half_open') THEN 1 ELSE 0 END, updated_at = now()
        WHERE key = endpoint_key
        RETURNING * INTO e;
        IF was IN ('open', 'half_open') THEN
            PERFORM webhook_worker.wake_endpoint(endpoint_key);
        END IF;
        RETURN e.state;
    END IF;

    INSERT INTO webhook_worker.endpoints AS x
        (key, consecutive_failures, counted_failure_at, failing_since, last_error, last_failure_at, failures)
    VALUES (endpoint_key, 1, now(), now(), error, now(), 1)
    ON CONFLICT (key) DO UPDATE
    SET consecutive_failures = x.consecutive_failures
            + CASE WHEN x.counted_failure_at IS NULL OR sent >= x.counted_failure_at THEN 1 ELSE 0 END,
        counted_failure_at = CASE WHEN x.counted_failure_at IS NULL OR sent >= x.counted_failure_at THEN now()
                                  ELSE x.counted_failure_at END,
        failing_since = coalesce(x.failing_since, now()),
        last_error = excluded.last_error, last_failure_at = now(), failures = x.failures + 1, updated_at = now()
    RETURNING * INTO e;
    IF e.state = 'disabled' THEN
        RETURN 'disabled';
    ELSIF e.failing_since <= now() - disable_after THEN
        UPDATE webhook_worker.endpoints
        SET state = 'disabled', disabled_at = now(), disabled_by = 'automatic: no success since ' || e.failing_since,
            next_probe_at = NULL, probe_started_at = NULL
        WHERE key = endpoint_key;
        PERFORM webhook_worker.wake_endpoint(endpoint_key);
        RETURN 'disabled';
    ELSIF e.state = 'half_open' OR (e.state = 'closed' AND e.consecutive_failures >= failure_threshold) THEN
        UPDATE webhook_worker.endpoints
        SET state = 'open', trips = trips + 1, opened_at = now(), probe_started_at = NULL,
            next_probe_at = now() + least(max_cooldown, cooldown * power(2, least(trips, 30)))
        WHERE key = endpoint_key;
        RETURN 'open';
    END IF;
    RETURN e.state;
END;
$$;
