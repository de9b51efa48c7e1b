-- The dead_lettered hook of webhook.deliver (010) finds its delivery in the partitions that may
-- hold it, as the worker's statements do (issue 23): created_at is at least the delivery id's
-- time less an hour (DeliveryID.clockAllowance), so that PostgreSQL leaves out the older days'
-- partitions instead of probing every day's index. A random id (made before ids carried their
-- time) is looked up in every partition, as before.
CREATE OR REPLACE FUNCTION webhook_worker.fail_delivery_of_dead_letter(job_id bigint, payload jsonb, last_error text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
