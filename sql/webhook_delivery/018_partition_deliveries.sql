-- webhook_deliveries (by created_at) and delivery_attempts (by attempted_at) become partitioned:
-- the old tables are attached, without a scan, as their _legacy partitions, and the next days'
-- partitions are created.
SELECT webhook_worker.history_partition('webhook_worker.webhook_deliveries');
SELECT webhook_worker.history_partition('webhook_worker.delivery_attempts');

-- The view followed the old table into its new name; it reads the whole history again.
CREATE OR REPLACE VIEW webhook_worker.deliveries_by_client AS
SELECT oauth_client_id, status, count(*) AS deliveries,
       max(created_at) AS last_created_at, max(delivered_at) AS last_delivered_at
FROM webhook_worker.webhook_deliveries
GROUP BY oauth_client_id, status;

SELECT count(*) FROM webhook_worker.create_history_partitions(interval '1 day', interval '3 days');
