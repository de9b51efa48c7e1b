-- Proves the bound of 015's CHECK on every row of job_attempts, in a transaction of its own: a
-- scan under SHARE UPDATE EXCLUSIVE, which lets the queue write attempts meanwhile.
ALTER TABLE {{schema}}.job_attempts VALIDATE CONSTRAINT job_attempts_history_bound;
