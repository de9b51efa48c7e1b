-- Deliveries and their attempts become partitioned by time (issue 23; the queue's 015 explains
-- the three steps). This one is instant: it registers both tables and adds their NOT VALID CHECKs.
--
-- A partitioned table's unique indexes must include its partition key, so what was unique across
-- the table is now unique within each partition (each day): the delivery id, a delivery per
-- (source job, client), an attempt's id. The fan-out that relies on the second reads the
-- deliveries its job made (whatever their day) before inserting, under the job's lock.
--
-- An attempt no longer references its delivery by foreign key (a foreign key cannot point into a
-- table partitioned on another column): both are dropped by the day, and prune deletes a
-- delivery's attempts with it.
ALTER TABLE webhook_worker.delivery_attempts DROP CONSTRAINT delivery_attempts_delivery_id_fkey;

SELECT webhook_worker.history_prepare(
    'webhook_worker.webhook_deliveries', 'created_at',
    ARRAY['delivery_id', 'source_job_id, oauth_client_id'], 'fillfactor = 60');
SELECT webhook_worker.history_prepare(
    'webhook_worker.delivery_attempts', 'attempted_at', ARRAY['id'], NULL);
