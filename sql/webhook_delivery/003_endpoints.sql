-- Endpoint health: a circuit breaker per receiving endpoint and automatic disabling. (The kinds
-- that operators pause, once part of this file, are JobQueue's: sql/job_queue/005_paused_kinds.sql.)

-- One row per endpoint that has ever failed (or was disabled by hand). An endpoint is one OAuth
-- client: key 'client:<"OAuthClient".id>'. Healthy endpoints that never failed have no row.
CREATE TABLE webhook_worker.endpoints (
    key                   text        PRIMARY KEY,
    -- closed: sending; open: not sending until next_probe_at; half_open: one probe delivery is
    -- in flight; disabled: not sending until an operator enables it.
    state                 text        NOT NULL DEFAULT 'closed'
                          CHECK (state IN ('closed', 'open', 'half_open', 'disabled')),
    consecutive_failures  integer     NOT NULL DEFAULT 0,
    -- The first failure since the last success: disabling counts from here.
    failing_since         timestamptz,
    -- Times the circuit opened since it was last closed; each doubles the cool-down.
    trips                 integer     NOT NULL DEFAULT 0,
    opened_at             timestamptz,
    next_probe_at         timestamptz,
    probe_started_at      timestamptz,
    disabled_at           timestamptz,
    disabled_by           text,
    last_error            text,
    last_failure_at       timestamptz,
    last_success_at       timestamptz,
    failures              bigint      NOT NULL DEFAULT 0,
    recoveries            bigint      NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_worker.endpoints IS
    'Circuit breaker state per webhook endpoint (one OAuth client). Enable a disabled one with webhook-worker endpoints enable.';

ALTER TABLE webhook_worker.dead_letter_jobs DROP CONSTRAINT dead_letter_jobs_reason_check;
ALTER TABLE webhook_worker.dead_letter_jobs ADD CONSTRAINT dead_letter_jobs_reason_check
    CHECK (reason IN ('attempts_exhausted', 'permanent_failure', 'endpoint_disabled'));

-- Deliveries snoozed while an endpoint's circuit was open (their last_error says 'waiting: ...')
-- run again now, in their order: when the circuit closes, and when the endpoint is disabled (to
-- end them as endpoint_disabled) or enabled.
CREATE FUNCTION webhook_worker.wake_endpoint(endpoint_key text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    woken integer;
BEGIN
    UPDATE webhook_worker.jobs SET run_at = now()
    WHERE concurrency_key = endpoint_key AND state = 'available' AND run_at > now() AND last_error LIKE 'waiting:%';
    GET DIAGNOSTICS woken = ROW_COUNT;
    IF woken > 0 THEN
        PERFORM pg_notify('webhook_worker_jobs', '');
    END IF;
    RETURN woken;
END;
$$;

-- May a delivery to this endpoint be sent now? 'send' (closed, or no row), 'probe' (the
-- cool-down is over: this delivery tests the endpoint; only one at a time), 'wait' (for `wait`),
-- or 'disabled'. A probe whose replica died is replaced after probe_timeout.
CREATE FUNCTION webhook_worker.endpoint_permit(endpoint_key text, probe_timeout interval)
RETURNS TABLE (decision text, wait interval)
LANGUAGE plpgsql AS $$
DECLARE
    e webhook_worker.endpoints;
BEGIN
    SELECT * INTO e FROM webhook_worker.endpoints WHERE key = endpoint_key;
    IF NOT FOUND OR e.state = 'closed' THEN
        RETURN QUERY SELECT 'send'::text, NULL::interval;
    ELSIF e.state = 'disabled' THEN
        RETURN QUERY SELECT 'disabled'::text, NULL::interval;
    ELSIF e.state = 'open' AND e.next_probe_at > now() THEN
        RETURN QUERY SELECT 'wait'::text, e.next_probe_at - now();
    ELSIF e.state = 'half_open' AND e.probe_started_at > now() - probe_timeout THEN
        RETURN QUERY SELECT 'wait'::text, e.probe_started_at + probe_timeout - now();
    ELSE
        -- Replicas racing here agree: the second UPDATE finds the row changed and matches nothing.
        UPDATE webhook_worker.endpoints SET state = 'half_open', probe_started_at = now(), updated_at = now()
        WHERE key = endpoint_key AND state = e.state AND probe_started_at IS NOT DISTINCT FROM e.probe_started_at;
        IF FOUND THEN
            RETURN QUERY SELECT 'probe'::text, NULL::interval;
        ELSE
            RETURN QUERY SELECT 'wait'::text, probe_timeout;
        END IF;
    END IF;
END;
$$;

-- Records one attempt's result against the endpoint and returns its state afterwards. A success
-- closes the circuit and forgets the failures; a failure counts, opens the circuit after
-- failure_threshold in a row (or at once after a failed probe) for a cool-down that doubles
-- with each trip up to max_cooldown, and disables the endpoint once it has failed for
-- disable_after without a single success.
CREATE FUNCTION webhook_worker.endpoint_record(
    endpoint_key text, succeeded boolean, error text, failure_threshold integer, cooldown interval,
    max_cooldown interval, disable_after interval
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    e webhook_worker.endpoints;
    was text;
BEGIN
    IF succeeded THEN
        SELECT state INTO was FROM webhook_worker.endpoints WHERE key = endpoint_key FOR UPDATE;
        IF NOT FOUND THEN
            RETURN 'closed';
        END IF;
        UPDATE webhook_worker.endpoints
        SET state = CASE WHEN state = 'disabled' THEN 'disabled' ELSE 'closed' END,
            consecutive_failures = 0, failing_since = NULL, trips = 0, opened_at = NULL, next_probe_at = NULL,
            probe_started_at = NULL, last_success_at = now(),
            recoveries = recoveries + CASE WHEN state IN ('open', 'half_open') THEN 1 ELSE 0 END, updated_at = now()
        WHERE key = endpoint_key
        RETURNING * INTO e;
        IF was IN ('open', 'half_open') THEN
            PERFORM webhook_worker.wake_endpoint(endpoint_key);
        END IF;
        RETURN e.state;
    END IF;

    INSERT INTO webhook_worker.endpoints AS x (key, consecutive_failures, failing_since, last_error, last_failure_at, failures)
    VALUES (endpoint_key, 1, now(), error, now(), 1)
    ON CONFLICT (key) DO UPDATE
    SET consecutive_failures = x.consecutive_failures + 1, failing_since = coalesce(x.failing_since, now()),
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

-- Operators: enable (closed, failures forgotten, waiting deliveries woken) and disable.
CREATE FUNCTION webhook_worker.set_endpoint_enabled(endpoint_key text, enabled boolean, actor text)
RETURNS webhook_worker.endpoints
LANGUAGE plpgsql AS $$
DECLARE
    e webhook_worker.endpoints;
BEGIN
    INSERT INTO webhook_worker.endpoints AS x (key) VALUES (endpoint_key) ON CONFLICT (key) DO NOTHING;
    UPDATE webhook_worker.endpoints
    SET state = CASE WHEN enabled THEN 'closed' ELSE 'disabled' END,
        consecutive_failures = CASE WHEN enabled THEN 0 ELSE consecutive_failures END,
        failing_since = CASE WHEN enabled THEN NULL ELSE failing_since END,
        trips = CASE WHEN enabled THEN 0 ELSE trips END,
        opened_at = NULL, next_probe_at = NULL, probe_started_at = NULL,
        disabled_at = CASE WHEN enabled THEN NULL ELSE now() END,
        disabled_by = CASE WHEN enabled THEN NULL ELSE actor END,
        updated_at = now()
    WHERE key = endpoint_key
    RETURNING * INTO e;
    PERFORM webhook_worker.wake_endpoint(endpoint_key);
    RETURN e;
END;
$$;
