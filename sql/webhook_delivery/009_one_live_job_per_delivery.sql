-- One live job per delivery (issue 20, defect 3). The fan-out inserted `webhook.deliver` jobs
-- without a unique key, while a resend gave its job `webhook.deliver:<delivery id>`; requeueing
-- a dead letter guards only on the unique key it kept. So `deliveries resend ID` followed by
-- `dead-letters retry` of that delivery's older dead letter queued a second job for one delivery
-- id: two concurrent POSTs with the same X-Webhook-Delivery. The fan-out now sets the key
-- (IntegrationConnectedHandler); this gives it to what was made before: waiting and running
-- jobs (one per delivery, if two are queued already the second keeps none and runs out as it
-- is) and dead letters, so that retrying them is refused while the delivery has a live job.
WITH keyed AS (
    SELECT DISTINCT ON (payload ->> 'delivery_id') id, 'webhook.deliver:' || (payload ->> 'delivery_id') AS k
    FROM webhook_worker.jobs
    WHERE kind = 'webhook.deliver' AND unique_key IS NULL AND payload ? 'delivery_id'
    ORDER BY payload ->> 'delivery_id', id
)
UPDATE webhook_worker.jobs j SET unique_key = keyed.k
FROM keyed
WHERE j.id = keyed.id
  AND NOT EXISTS (SELECT 1 FROM webhook_worker.jobs o WHERE o.unique_key = keyed.k);

UPDATE webhook_worker.dead_letter_jobs
SET unique_key = 'webhook.deliver:' || (payload ->> 'delivery_id')
WHERE kind = 'webhook.deliver' AND unique_key IS NULL AND payload ? 'delivery_id';
