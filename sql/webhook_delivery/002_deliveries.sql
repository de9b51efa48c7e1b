-- Webhook deliveries: one row per (event, OAuth client), and one row per HTTP attempt.

CREATE TABLE webhook_worker.webhook_deliveries (
    delivery_id             uuid        PRIMARY KEY,
    event                   text        NOT NULL,
    -- The job whose fan-out created this delivery (e.g. the integration.connected job).
    source_job_id           bigint      NOT NULL,
    integration_account_id  text        NOT NULL,
    user_id                 text        NOT NULL,
    -- "OAuthClient".id
    oauth_client_id         text        NOT NULL,
    -- The exact UTF-8 body sent on every attempt.
    payload                 text        NOT NULL,
    status                  text        NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts                integer     NOT NULL DEFAULT 0,
    last_http_status        integer,
    last_error              text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    delivered_at            timestamptz,
    -- A fan-out that runs twice creates nothing twice.
    CONSTRAINT webhook_deliveries_once_per_client UNIQUE (source_job_id, oauth_client_id)
);
COMMENT ON TABLE webhook_worker.webhook_deliveries IS
    'One row per (event, OAuth client). status: pending (attempts remain), delivered, failed (dead letter), cancelled (no longer a recipient).';
-- No index covers a column that attempts update (status, attempts, last_*, updated_at,
-- delivered_at), and pages keep room: recording an attempt is a HOT update that touches no index.
CREATE INDEX webhook_deliveries_client_idx ON webhook_worker.webhook_deliveries (oauth_client_id, created_at);
CREATE INDEX webhook_deliveries_created_idx ON webhook_worker.webhook_deliveries (created_at);
ALTER TABLE webhook_worker.webhook_deliveries SET (fillfactor = 85);

CREATE TABLE webhook_worker.delivery_attempts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id       uuid        NOT NULL REFERENCES webhook_worker.webhook_deliveries ON DELETE CASCADE,
    attempt           integer     NOT NULL,
    job_id            bigint,
    worker_id         text,
    -- The URL called, with any password in it masked.
    url               text        NOT NULL,
    http_status       integer,
    -- When no response came: timeout, connect_failed, dns, tls, connection_reset, policy_refused, invalid_url, error.
    error_class       text,
    error             text,
    duration_ms       integer     NOT NULL,
    response_excerpt  text,
    attempted_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_worker.delivery_attempts IS 'One row per HTTP attempt of a delivery.';
CREATE INDEX delivery_attempts_delivery_idx ON webhook_worker.delivery_attempts (delivery_id, attempt);
CREATE INDEX delivery_attempts_attempted_idx ON webhook_worker.delivery_attempts (attempted_at);

CREATE VIEW webhook_worker.deliveries_by_client AS
SELECT oauth_client_id, status, count(*) AS deliveries,
       max(created_at) AS last_created_at, max(delivered_at) AS last_delivered_at
FROM webhook_worker.webhook_deliveries
GROUP BY oauth_client_id, status;

-- However a webhook.deliver job reaches the dead letters (its last attempt failed, it failed
-- permanently, or its replica died on the last attempt), its delivery ends 'failed'.
CREATE FUNCTION webhook_worker.fail_delivery_of_dead_letter() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    id text := NEW.payload ->> 'delivery_id';
BEGIN
    IF id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        UPDATE webhook_worker.webhook_deliveries
        SET status = 'failed', last_error = coalesce(NEW.last_error, last_error), updated_at = now()
        WHERE delivery_id = id::uuid AND status = 'pending';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER dead_letter_fails_delivery
    AFTER INSERT ON webhook_worker.dead_letter_jobs
    FOR EACH ROW WHEN (NEW.kind = 'webhook.deliver')
    EXECUTE FUNCTION webhook_worker.fail_delivery_of_dead_letter();
