-- Proves 016's CHECKs, one scan each under SHARE UPDATE EXCLUSIVE: deliveries go on meanwhile.
ALTER TABLE webhook_worker.webhook_deliveries VALIDATE CONSTRAINT webhook_deliveries_history_bound;
ALTER TABLE webhook_worker.delivery_attempts VALIDATE CONSTRAINT delivery_attempts_history_bound;
