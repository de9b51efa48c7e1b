-- The deliveries stop naming the queue's tables: what they did with triggers and a constraint
-- of their own on jobs and dead_letter_jobs, and with an UPDATE of jobs, goes through the hooks
-- and functions of the queue's migration 009.
--
-- 1. Every integration.connected job inserted, however (the optional trigger, the web app's
--    code, `enqueue`, a requeued dead letter, the catch-up), is recorded in
--    integration_connected_enqueued for the catch-up: the queue's `inserted` hook.
-- 2. A webhook.deliver job dead-lettered, by whoever (the worker, the lease reaper), ends its
--    delivery 'failed': the queue's `dead_lettered` hook.
-- 3. endpoint_disabled is a dead-letter reason the queue is told about, with its meaning.
-- 4. wake_endpoint() runs the deliveries snoozed by an open circuit through the queue's
--    wake_snoozed().
-- Behaviour is unchanged; the old triggers and their functions go.

CREATE FUNCTION webhook_worker.record_integration_connected(job_id bigint, payload jsonb) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.jsonb_typeof(payload -> 'integration_account_id') = 'string' THEN
        INSERT INTO webhook_worker.integration_connected_enqueued (integration_account_id, job_id)
        VALUES (payload ->> 'integration_account_id', job_id)
        ON CONFLICT (integration_account_id) DO NOTHING;
    END IF;
END;
$$;
COMMENT ON FUNCTION webhook_worker.record_integration_connected(bigint, jsonb) IS
    'The queue''s inserted hook of integration.connected: records the account for the catch-up.';
REVOKE EXECUTE ON FUNCTION webhook_worker.record_integration_connected(bigint, jsonb) FROM PUBLIC;

CREATE FUNCTION webhook_worker.fail_delivery_of_dead_letter(job_id bigint, payload jsonb, last_error text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $_$
DECLARE
    id text := payload ->> 'delivery_id';
BEGIN
    IF id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        UPDATE webhook_worker.webhook_deliveries d
        SET status = 'failed', last_error = coalesce(fail_delivery_of_dead_letter.last_error, d.last_error),
            updated_at = now()
        WHERE d.delivery_id = id::uuid AND d.status = 'pending';
    END IF;
END;
$_$;
COMMENT ON FUNCTION webhook_worker.fail_delivery_of_dead_letter(bigint, jsonb, text) IS
    'The queue''s dead_lettered hook of webhook.deliver: the delivery ends failed.';
REVOKE EXECUTE ON FUNCTION webhook_worker.fail_delivery_of_dead_letter(bigint, jsonb, text) FROM PUBLIC;

SELECT webhook_worker.set_kind_hook(
    'integration.connected', 'inserted', 'webhook_worker.record_integration_connected');
SELECT webhook_worker.set_kind_hook(
    'webhook.deliver', 'dead_lettered', 'webhook_worker.fail_delivery_of_dead_letter');

DROP TRIGGER jobs_record_integration_connected ON webhook_worker.jobs;
DROP FUNCTION webhook_worker.record_integration_connected_enqueued();
DROP TRIGGER dead_letter_fails_delivery ON webhook_worker.dead_letter_jobs;
DROP FUNCTION webhook_worker.fail_delivery_of_dead_letter();

-- On a new database, 003 (run after the queue's 009) put back its list of three reasons under
-- the constraint's name; the registry decides now.
ALTER TABLE webhook_worker.dead_letter_jobs DROP CONSTRAINT dead_letter_jobs_reason_check;
SELECT webhook_worker.add_dead_letter_reason(
    'endpoint_disabled',
    'The delivery''s endpoint was disabled (by an operator, or after failing for too long); '
        || 'requeue it once the endpoint is enabled again.');

CREATE OR REPLACE FUNCTION webhook_worker.wake_endpoint(endpoint_key text) RETURNS integer
LANGUAGE sql AS $$
    SELECT webhook_worker.wake_snoozed('webhook.deliver', endpoint_key, 'waiting:')
$$;
