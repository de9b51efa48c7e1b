-- Generated from a freshly migrated database (SchemaSnapshotTests); do not edit. Regenerate with
-- make schema-snapshot.

CREATE FUNCTION webhook_worker.delivery_id_time(id uuid) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN pg_catalog.substr(id::text, 15, 1) = '7' THEN pg_catalog.to_timestamp(
        ('x' || pg_catalog.lpad(pg_catalog.replace(pg_catalog.left(id::text, 13), '-', ''), 16, '0'))::bit(64)::bigint
        / 1000.0) END
$$;

CREATE FUNCTION webhook_worker.delivery_ids_since(ids uuid[]) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN pg_catalog.bool_and(t IS NOT NULL)
                THEN pg_catalog.to_timestamp(pg_catalog.date_part('epoch', pg_catalog.min(t)) - 86400)
                ELSE '-infinity'::timestamptz END
    FROM (SELECT webhook_worker.delivery_id_time(i) AS t FROM pg_catalog.unnest(ids) AS i) x
$$;

CREATE FUNCTION webhook_worker.delivery_ids_until(ids uuid[]) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
    SELECT CASE WHEN pg_catalog.bool_and(t IS NOT NULL)
                THEN pg_catalog.to_timestamp(pg_catalog.date_part('epoch', pg_catalog.max(t)) + 86400)
                ELSE 'infinity'::timestamptz END
    FROM (SELECT webhook_worker.delivery_id_time(i) AS t FROM pg_catalog.unnest(ids) AS i) x
$$;

CREATE FUNCTION webhook_worker.endpoint_apply_limit(endpoint_key text, adaptive integer) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION webhook_worker.endpoint_pause(endpoint_key text, wait interval) RETURNS timestamp with time zone
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

CREATE FUNCTION webhook_worker.endpoint_permit(endpoint_key text, probe_timeout interval) RETURNS TABLE(decision text, wait interval)
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION webhook_worker.endpoint_record(endpoint_key text, succeeded boolean, error text, failure_threshold integer, cooldown interval, max_cooldown interval, disable_after interval, duration interval DEFAULT '00:00:00'::interval) RETURNS text
    LANGUAGE plpgsql
    AS $$
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

CREATE TABLE webhook_worker.endpoints (
    key text NOT NULL,
    state text DEFAULT 'closed'::text NOT NULL,
    consecutive_failures integer DEFAULT 0 NOT NULL,
    failing_since timestamp with time zone,
    trips integer DEFAULT 0 NOT NULL,
    opened_at timestamp with time zone,
    next_probe_at timestamp with time zone,
    probe_started_at timestamp with time zone,
    disabled_at timestamp with time zone,
    disabled_by text,
    last_error text,
    last_failure_at timestamp with time zone,
    last_success_at timestamp with time zone,
    failures bigint DEFAULT 0 NOT NULL,
    recoveries bigint DEFAULT 0 NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    paused_until timestamp with time zone,
    paused_at timestamp with time zone,
    throttled_seconds double precision DEFAULT 0 NOT NULL,
    counted_failure_at timestamp with time zone,
    max_in_flight integer,
    rate_limit double precision,
    rate_tokens double precision,
    rate_tokens_at timestamp with time zone,
    rate_next_slot timestamp with time zone,
    limits_set_by text,
    limits_set_at timestamp with time zone,
    CONSTRAINT endpoints_max_in_flight_check CHECK (((max_in_flight >= 1) AND (max_in_flight <= 10000))),
    CONSTRAINT endpoints_rate_limit_check CHECK (((rate_limit > (0)::double precision) AND (rate_limit <= (100000)::double precision))),
    CONSTRAINT endpoints_state_check CHECK ((state = ANY (ARRAY['closed'::text, 'open'::text, 'half_open'::text, 'disabled'::text])))
);

COMMENT ON TABLE webhook_worker.endpoints IS 'Circuit breaker state per webhook endpoint (one OAuth client). Enable a disabled one with webhook-worker endpoints enable.';

COMMENT ON COLUMN webhook_worker.endpoints.consecutive_failures IS 'Failures in a row that count towards the threshold: requests in flight together that fail together count once.';

COMMENT ON COLUMN webhook_worker.endpoints.counted_failure_at IS 'When the last failure that counted towards the threshold came back: a failure of a request sent before it does not count again.';

COMMENT ON COLUMN webhook_worker.endpoints.max_in_flight IS 'Operator''s fixed limit on deliveries in flight across replicas; overrides the adaptive limit while set (NULL: adaptive).';

COMMENT ON COLUMN webhook_worker.endpoints.rate_limit IS 'Operator''s rate limit in requests per second (a token bucket, burst max(1, rate_limit)); NULL: none.';

COMMENT ON COLUMN webhook_worker.endpoints.rate_tokens IS 'The rate limit''s bucket: tokens left at rate_tokens_at (NULL: full).';

COMMENT ON COLUMN webhook_worker.endpoints.rate_next_slot IS 'When the next delivery held by the rate limit is told to come back (held deliveries come back one token apart).';

CREATE FUNCTION webhook_worker.endpoint_set_limits(endpoint_key text, set_max boolean, new_max integer, set_rate boolean, new_rate double precision, actor text) RETURNS webhook_worker.endpoints
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION webhook_worker.endpoint_take_token(endpoint_key text) RETURNS double precision
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION webhook_worker.endpoints_adapt(keys text[], signals text[], durations double precision[], floors integer[], initials integer[], ceilings integer[], slow_factors double precision[], slow_floors double precision[], backoffs double precision[], smoothings double precision[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION webhook_worker.enqueue_on_integration_account_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    SET lock_timeout TO '2s'
    AS $$
BEGIN
    BEGIN
        -- Checked here, not in a WHEN clause on the trigger: a WHEN clause would make these
        -- columns depend on the trigger and block the web app's migrations from dropping them.
        IF NEW."isActive" IS NOT TRUE OR NEW.deleted IS NOT NULL THEN
            RETURN NULL;
        END IF;
        INSERT INTO webhook_worker.jobs (kind, payload)
        VALUES (
            'integration.connected',
            pg_catalog.jsonb_build_object('integration_account_id', NEW.id, 'user_id', NEW."integratedById")
        );
    EXCEPTION WHEN OTHERS THEN
        -- Never fail the web app's insert (the seed's rule). The worker's catch-up enqueues the
        -- event later, and counts it (webhook_worker_integration_events_caught_up_total).
        RAISE WARNING 'webhook-worker: integration.connected was not enqueued for IntegrationAccount % (the worker''s catch-up will enqueue it): % (SQLSTATE %)',
            NEW.id, SQLERRM, SQLSTATE;
    END;
    RETURN NULL;  -- ignored for AFTER triggers
END;
$$;

COMMENT ON FUNCTION webhook_worker.enqueue_on_integration_account_insert() IS 'Run by the optional trigger of sql/optional/enqueue_on_integration_account_insert.sql: enqueues integration.connected after an IntegrationAccount insert; never fails the insert.';

CREATE FUNCTION webhook_worker.fail_delivery_of_dead_letter(job_id bigint, payload jsonb, last_error text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $_$
DECLARE
    id text := payload ->> 'delivery_id';
    made timestamptz;
    since timestamptz := '-infinity';
BEGIN
    IF id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        made := webhook_worker.delivery_id_time(id::uuid);
        IF made IS NOT NULL THEN
            since := made - interval '1 hour';
        END IF;
        UPDATE webhook_worker.webhook_deliveries d
        SET status = 'failed', last_error = coalesce(fail_delivery_of_dead_letter.last_error, d.last_error),
            updated_at = now()
        WHERE d.delivery_id = id::uuid AND d.status = 'pending' AND d.created_at >= since;
    END IF;
END;
$_$;

COMMENT ON FUNCTION webhook_worker.fail_delivery_of_dead_letter(job_id bigint, payload jsonb, last_error text) IS 'The queue''s dead_lettered hook of webhook.deliver: the delivery ends failed.';

CREATE FUNCTION webhook_worker.keep_retired_secret_on_update() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    BEGIN
        INSERT INTO webhook_worker.retired_secrets (oauth_client_id, secret) VALUES (OLD.id, OLD."webhookSecret");
    EXCEPTION WHEN OTHERS THEN
        -- Never fail the web app's update. The message names the client, never a secret.
        RAISE WARNING 'webhook-worker: the previous webhook secret of client % was not kept: % (SQLSTATE %)',
            OLD.id, SQLERRM, SQLSTATE;
    END;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION webhook_worker.keep_retired_secret_on_update() IS 'Run by the optional trigger of sql/optional/keep_retired_webhook_secrets.sql: keeps the previous webhook secret in retired_secrets.';

CREATE FUNCTION webhook_worker.notify_endpoint_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('webhook_worker_endpoint_events', pg_catalog.json_build_object(
        'id', NEW.id, 'event', NEW.event, 'oauth_client_id', NEW.oauth_client_id)::text);
    RETURN NULL;
END;
$$;

CREATE FUNCTION webhook_worker.record_delivery_failed_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    INSERT INTO webhook_worker.endpoint_events (oauth_client_id, event, reason, delivery_id)
    VALUES (NEW.oauth_client_id, 'delivery_failed', NEW.last_error, NEW.delivery_id);
    RETURN NULL;
END;
$$;

CREATE FUNCTION webhook_worker.record_endpoint_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
DECLARE
    client text;
BEGIN
    IF NEW.key NOT LIKE 'client:%' THEN
        RETURN NULL;
    END IF;
    client := pg_catalog.substr(NEW.key, 8);
    IF NEW.state = 'disabled' THEN
        INSERT INTO webhook_worker.endpoint_events (oauth_client_id, event, reason, failing_since)
        VALUES (client, 'endpoint_disabled', NEW.disabled_by, NEW.failing_since);
    ELSIF OLD.state = 'disabled' THEN
        INSERT INTO webhook_worker.endpoint_events (oauth_client_id, event, reason)
        VALUES (client, 'endpoint_enabled', 'enabled by an operator');
    ELSIF NEW.state = 'open' AND OLD.state = 'closed' THEN
        INSERT INTO webhook_worker.endpoint_events (oauth_client_id, event, reason, failing_since)
        VALUES (client, 'circuit_opened', NEW.last_error, NEW.failing_since);
    ELSIF NEW.state = 'closed' AND OLD.state IN ('open', 'half_open') THEN
        INSERT INTO webhook_worker.endpoint_events (oauth_client_id, event, reason)
        VALUES (client, 'circuit_recovered',
                CASE WHEN NEW.last_success_at IS DISTINCT FROM OLD.last_success_at
                     THEN 'a delivery succeeded' ELSE 'enabled by an operator' END);
    END IF;
    RETURN NULL;
END;
$$;

CREATE FUNCTION webhook_worker.record_integration_connected(job_id bigint, payload jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO 'pg_catalog', 'pg_temp'
    AS $$
BEGIN
    IF pg_catalog.jsonb_typeof(payload -> 'integration_account_id') = 'string' THEN
        INSERT INTO webhook_worker.integration_connected_enqueued (integration_account_id, job_id)
        VALUES (payload ->> 'integration_account_id', job_id)
        ON CONFLICT (integration_account_id) DO NOTHING;
    END IF;
END;
$$;

COMMENT ON FUNCTION webhook_worker.record_integration_connected(job_id bigint, payload jsonb) IS 'The queue''s inserted hook of integration.connected: records the account for the catch-up.';

CREATE FUNCTION webhook_worker.set_endpoint_enabled(endpoint_key text, enabled boolean, actor text) RETURNS webhook_worker.endpoints
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION webhook_worker.wake_endpoint(endpoint_key text) RETURNS integer
    LANGUAGE sql
    AS $$
    SELECT webhook_worker.wake_snoozed('webhook.deliver', endpoint_key, 'waiting:')
$$;

CREATE TABLE webhook_worker.console_audit (
    id bigint NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL,
    outcome text NOT NULL
);

COMMENT ON TABLE webhook_worker.console_audit IS 'Actions taken through the web console: who (token name), what, on what, and how it ended.';

ALTER TABLE webhook_worker.console_audit ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME webhook_worker.console_audit_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE webhook_worker.console_sign_outs (
    nonce text NOT NULL,
    actor text NOT NULL,
    signed_out timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

COMMENT ON TABLE webhook_worker.console_sign_outs IS 'Web console sessions signed out before their expiry: their cookies are refused until then.';

CREATE TABLE webhook_worker.dead_letter_jobs (
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
    concurrency_key text
);

CREATE TABLE webhook_worker.webhook_deliveries (
    delivery_id uuid NOT NULL,
    event text NOT NULL,
    source_job_id bigint NOT NULL,
    integration_account_id text NOT NULL,
    user_id text NOT NULL,
    oauth_client_id text NOT NULL,
    payload text NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    last_http_status integer,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    delivered_at timestamp with time zone,
    CONSTRAINT webhook_deliveries_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text, 'cancelled'::text])))
)
PARTITION BY RANGE (created_at);

COMMENT ON TABLE webhook_worker.webhook_deliveries IS 'One row per (event, OAuth client). status: pending (attempts remain), delivered, failed (dead letter), cancelled (no longer a recipient).';

CREATE VIEW webhook_worker.deliveries_by_client AS
 SELECT webhook_deliveries.oauth_client_id,
    webhook_deliveries.status,
    count(*) AS deliveries,
    max(webhook_deliveries.created_at) AS last_created_at,
    max(webhook_deliveries.delivered_at) AS last_delivered_at
   FROM webhook_worker.webhook_deliveries
  GROUP BY webhook_deliveries.oauth_client_id, webhook_deliveries.status;

CREATE TABLE webhook_worker.delivery_attempts (
    id bigint NOT NULL,
    delivery_id uuid NOT NULL,
    attempt integer NOT NULL,
    job_id bigint,
    worker_id text,
    url text NOT NULL,
    http_status integer,
    error_class text,
    error text,
    duration_ms integer NOT NULL,
    response_excerpt text,
    attempted_at timestamp with time zone DEFAULT now() NOT NULL
)
PARTITION BY RANGE (attempted_at);

COMMENT ON TABLE webhook_worker.delivery_attempts IS 'One row per HTTP attempt of a delivery.';

ALTER TABLE webhook_worker.delivery_attempts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME webhook_worker.delivery_attempts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE webhook_worker.delivery_attempts_legacy (
    id bigint NOT NULL,
    delivery_id uuid NOT NULL,
    attempt integer NOT NULL,
    job_id bigint,
    worker_id text,
    url text NOT NULL,
    http_status integer,
    error_class text,
    error text,
    duration_ms integer NOT NULL,
    response_excerpt text,
    attempted_at timestamp with time zone DEFAULT now() NOT NULL
);

COMMENT ON TABLE webhook_worker.delivery_attempts_legacy IS 'One row per HTTP attempt of a delivery.';

CREATE TABLE webhook_worker.endpoint_concurrency (
    key text NOT NULL,
    limit_value double precision NOT NULL,
    latency_ms double precision,
    applied integer,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    cut_at timestamp with time zone
);

COMMENT ON TABLE webhook_worker.endpoint_concurrency IS 'Adaptive concurrency limit per webhook endpoint (AIMD); the queue obeys it through concurrency_key_limits.';

COMMENT ON COLUMN webhook_worker.endpoint_concurrency.cut_at IS 'When the limit was last cut: an overloaded outcome of a request sent before it cuts nothing more.';

CREATE TABLE webhook_worker.endpoint_events (
    id bigint NOT NULL,
    oauth_client_id text NOT NULL,
    event text NOT NULL,
    reason text,
    delivery_id uuid,
    failing_since timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    posted_at timestamp with time zone,
    post_attempts integer DEFAULT 0 NOT NULL,
    post_after timestamp with time zone,
    post_error text,
    CONSTRAINT endpoint_events_event_check CHECK ((event = ANY (ARRAY['circuit_opened'::text, 'circuit_recovered'::text, 'endpoint_disabled'::text, 'endpoint_enabled'::text, 'delivery_failed'::text])))
);

COMMENT ON TABLE webhook_worker.endpoint_events IS 'Operational events for the web app (circuit opened or recovered, endpoint disabled or enabled, delivery failed), each announced on the channel webhook_worker_endpoint_events. Pruned with the history (webhook-worker prune).';

COMMENT ON COLUMN webhook_worker.endpoint_events.posted_at IS 'When a replica POSTed the event to --operational-url and got a 2xx; NULL while not (yet) posted.';

COMMENT ON COLUMN webhook_worker.endpoint_events.post_attempts IS 'POSTs of the event to --operational-url begun so far.';

COMMENT ON COLUMN webhook_worker.endpoint_events.post_after IS 'The next POST not before: the lease of the relay that holds it, or the wait after a failed POST.';

COMMENT ON COLUMN webhook_worker.endpoint_events.post_error IS 'Why the last POST to --operational-url failed.';

ALTER TABLE webhook_worker.endpoint_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME webhook_worker.endpoint_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE webhook_worker.integration_connected_enqueued (
    integration_account_id text NOT NULL,
    job_id bigint NOT NULL,
    enqueued_at timestamp with time zone DEFAULT now() NOT NULL
);

COMMENT ON TABLE webhook_worker.integration_connected_enqueued IS 'Integration accounts that had an integration.connected job inserted, however it was inserted; read by the worker''s catch-up, which deletes rows older than twice its window.';

COMMENT ON TABLE webhook_worker.job_attempts IS 'One row per attempt of any job, written when the attempt ends. Pruned by age (webhook-worker prune).';

CREATE TABLE webhook_worker.retired_secrets (
    id bigint NOT NULL,
    oauth_client_id text NOT NULL,
    secret text NOT NULL,
    retired_at timestamp with time zone DEFAULT now() NOT NULL
);

COMMENT ON TABLE webhook_worker.retired_secrets IS 'Previous webhook secrets of OAuth clients, still signed with during the overlap. Contains secrets.';

ALTER TABLE webhook_worker.retired_secrets ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME webhook_worker.retired_secrets_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE webhook_worker.webhook_deliveries_legacy (
    delivery_id uuid NOT NULL,
    event text NOT NULL,
    source_job_id bigint NOT NULL,
    integration_account_id text NOT NULL,
    user_id text NOT NULL,
    oauth_client_id text NOT NULL,
    payload text NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    last_http_status integer,
    last_error text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    delivered_at timestamp with time zone,
    CONSTRAINT webhook_deliveries_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text, 'cancelled'::text])))
)
WITH (fillfactor='60');

COMMENT ON TABLE webhook_worker.webhook_deliveries_legacy IS 'One row per (event, OAuth client). status: pending (attempts remain), delivered, failed (dead letter), cancelled (no longer a recipient).';

ALTER TABLE ONLY webhook_worker.delivery_attempts ATTACH PARTITION webhook_worker.delivery_attempts_legacy FOR VALUES FROM (MINVALUE) TO ('<a UTC midnight>');

ALTER TABLE ONLY webhook_worker.webhook_deliveries ATTACH PARTITION webhook_worker.webhook_deliveries_legacy FOR VALUES FROM (MINVALUE) TO ('<a UTC midnight>');

ALTER TABLE ONLY webhook_worker.console_audit
    ADD CONSTRAINT console_audit_pkey PRIMARY KEY (id);

ALTER TABLE ONLY webhook_worker.console_sign_outs
    ADD CONSTRAINT console_sign_outs_pkey PRIMARY KEY (nonce);

ALTER TABLE ONLY webhook_worker.delivery_attempts_legacy
    ADD CONSTRAINT delivery_attempts_pkey PRIMARY KEY (id);

ALTER TABLE ONLY webhook_worker.endpoint_concurrency
    ADD CONSTRAINT endpoint_concurrency_pkey PRIMARY KEY (key);

ALTER TABLE ONLY webhook_worker.endpoint_events
    ADD CONSTRAINT endpoint_events_pkey PRIMARY KEY (id);

ALTER TABLE ONLY webhook_worker.endpoints
    ADD CONSTRAINT endpoints_pkey PRIMARY KEY (key);

ALTER TABLE ONLY webhook_worker.integration_connected_enqueued
    ADD CONSTRAINT integration_connected_enqueued_pkey PRIMARY KEY (integration_account_id);

ALTER TABLE ONLY webhook_worker.retired_secrets
    ADD CONSTRAINT retired_secrets_pkey PRIMARY KEY (id);

ALTER TABLE ONLY webhook_worker.webhook_deliveries_legacy
    ADD CONSTRAINT webhook_deliveries_once_per_client UNIQUE (source_job_id, oauth_client_id);

ALTER TABLE ONLY webhook_worker.webhook_deliveries_legacy
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (delivery_id);

CREATE INDEX console_audit_at_idx ON webhook_worker.console_audit USING btree (at);

CREATE INDEX console_sign_outs_expires_at_idx ON webhook_worker.console_sign_outs USING btree (expires_at);

CREATE INDEX delivery_attempts_attempted_idx ON ONLY webhook_worker.delivery_attempts USING btree (attempted_at);

CREATE INDEX delivery_attempts_attempted_idx_legacy ON webhook_worker.delivery_attempts_legacy USING btree (attempted_at);

CREATE INDEX delivery_attempts_delivery_idx ON ONLY webhook_worker.delivery_attempts USING btree (delivery_id, attempt);

CREATE INDEX delivery_attempts_delivery_idx_legacy ON webhook_worker.delivery_attempts_legacy USING btree (delivery_id, attempt);

CREATE INDEX endpoint_events_client_idx ON webhook_worker.endpoint_events USING btree (oauth_client_id, id);

CREATE INDEX endpoint_events_created_at_idx ON webhook_worker.endpoint_events USING btree (created_at);

CREATE INDEX endpoint_events_unposted_idx ON webhook_worker.endpoint_events USING btree (id) WHERE (posted_at IS NULL);

CREATE INDEX integration_connected_enqueued_at_idx ON webhook_worker.integration_connected_enqueued USING btree (enqueued_at);

CREATE INDEX retired_secrets_client_idx ON webhook_worker.retired_secrets USING btree (oauth_client_id, retired_at DESC);

CREATE INDEX webhook_deliveries_client_idx ON ONLY webhook_worker.webhook_deliveries USING btree (oauth_client_id, created_at);

CREATE INDEX webhook_deliveries_client_idx_legacy ON webhook_worker.webhook_deliveries_legacy USING btree (oauth_client_id, created_at);

CREATE INDEX webhook_deliveries_created_idx ON ONLY webhook_worker.webhook_deliveries USING btree (created_at);

CREATE INDEX webhook_deliveries_created_idx_legacy ON webhook_worker.webhook_deliveries_legacy USING btree (created_at);

ALTER INDEX webhook_worker.delivery_attempts_attempted_idx ATTACH PARTITION webhook_worker.delivery_attempts_attempted_idx_legacy;

ALTER INDEX webhook_worker.delivery_attempts_delivery_idx ATTACH PARTITION webhook_worker.delivery_attempts_delivery_idx_legacy;

ALTER INDEX webhook_worker.webhook_deliveries_client_idx ATTACH PARTITION webhook_worker.webhook_deliveries_client_idx_legacy;

ALTER INDEX webhook_worker.webhook_deliveries_created_idx ATTACH PARTITION webhook_worker.webhook_deliveries_created_idx_legacy;

CREATE TRIGGER endpoint_events_notify AFTER INSERT ON webhook_worker.endpoint_events FOR EACH ROW EXECUTE FUNCTION webhook_worker.notify_endpoint_event();

CREATE TRIGGER endpoints_record_event AFTER UPDATE OF state ON webhook_worker.endpoints FOR EACH ROW WHEN ((old.state IS DISTINCT FROM new.state)) EXECUTE FUNCTION webhook_worker.record_endpoint_event();

CREATE TRIGGER webhook_deliveries_record_failed AFTER UPDATE OF status ON webhook_worker.webhook_deliveries FOR EACH ROW WHEN (((new.status = 'failed'::text) AND (old.status IS DISTINCT FROM 'failed'::text))) EXECUTE FUNCTION webhook_worker.record_delivery_failed_event();
