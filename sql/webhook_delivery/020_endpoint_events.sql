-- Operational events for the web app: what happened to a client's endpoint, or to one of its
-- deliveries, that the OAuth application's owner should hear about. Recorded by triggers on the
-- tables whose rows change (endpoints' circuit state, deliveries' status), so every path that
-- changes them, the worker's and an operator's, records the same events; each new row is also
-- announced on the channel webhook_worker_endpoint_events (NOTIFY, sent at commit).

CREATE TABLE webhook_worker.endpoint_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    oauth_client_id text NOT NULL,
    event text NOT NULL CHECK (event IN (
        'circuit_opened', 'circuit_recovered', 'endpoint_disabled', 'endpoint_enabled', 'delivery_failed')),
    -- Why: the last error, who disabled it, what ended the delivery.
    reason text,
    -- delivery_failed: which delivery.
    delivery_id uuid,
    -- Since when the endpoint has had no success (circuit_opened, endpoint_disabled): with the
    -- worker's --endpoint-disable-after, when it will be disabled.
    failing_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX endpoint_events_client_idx ON webhook_worker.endpoint_events (oauth_client_id, id);
CREATE INDEX endpoint_events_created_at_idx ON webhook_worker.endpoint_events (created_at);

COMMENT ON TABLE webhook_worker.endpoint_events IS 'Operational events for the web app (circuit opened or recovered, endpoint disabled or enabled, delivery failed), each announced on the channel webhook_worker_endpoint_events. Pruned with the history (webhook-worker prune).';

CREATE FUNCTION webhook_worker.notify_endpoint_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.pg_notify('webhook_worker_endpoint_events', pg_catalog.json_build_object(
        'id', NEW.id, 'event', NEW.event, 'oauth_client_id', NEW.oauth_client_id)::text);
    RETURN NULL;
END;
$$;

REVOKE EXECUTE ON FUNCTION webhook_worker.notify_endpoint_event() FROM PUBLIC;

CREATE TRIGGER endpoint_events_notify AFTER INSERT ON webhook_worker.endpoint_events
    FOR EACH ROW EXECUTE FUNCTION webhook_worker.notify_endpoint_event();

-- A circuit's state changed: closed -> open is circuit_opened (a failed probe, half_open -> open,
-- is not news); open or half_open -> closed is circuit_recovered; anything -> disabled is
-- endpoint_disabled; disabled -> anything is endpoint_enabled.
CREATE FUNCTION webhook_worker.record_endpoint_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
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

REVOKE EXECUTE ON FUNCTION webhook_worker.record_endpoint_event() FROM PUBLIC;

CREATE TRIGGER endpoints_record_event AFTER UPDATE OF state ON webhook_worker.endpoints
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION webhook_worker.record_endpoint_event();

-- A delivery ended failed: its job was dead-lettered (attempts exhausted, a permanent failure, the
-- endpoint disabled).
CREATE FUNCTION webhook_worker.record_delivery_failed_event() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO webhook_worker.endpoint_events (oauth_client_id, event, reason, delivery_id)
    VALUES (NEW.oauth_client_id, 'delivery_failed', NEW.last_error, NEW.delivery_id);
    RETURN NULL;
END;
$$;

REVOKE EXECUTE ON FUNCTION webhook_worker.record_delivery_failed_event() FROM PUBLIC;

CREATE TRIGGER webhook_deliveries_record_failed AFTER UPDATE OF status ON webhook_worker.webhook_deliveries
    FOR EACH ROW WHEN (NEW.status = 'failed' AND OLD.status IS DISTINCT FROM 'failed')
    EXECUTE FUNCTION webhook_worker.record_delivery_failed_event();
