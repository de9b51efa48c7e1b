-- The queue's attempts table (JobQueue's 001) tells a DBA how this program prunes it, as it did
-- when 001 was one file.
COMMENT ON TABLE webhook_worker.job_attempts IS
    'One row per attempt of any job, written when the attempt ends. Pruned by age (webhook-worker prune).';
