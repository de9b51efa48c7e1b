-- Releases are capped and backed off. (requeue_dead_letter keeps a job's attempt limit since 004,
-- which redefines it with the concurrency key as well.)

-- Times the job was put back without spending an attempt because the database failed, not the
-- job (a terminated backend, a statement or lock timeout). Each such release waits longer
-- (growing, capped, jittered), and past the worker's cap a database failure counts as a failed
-- attempt, so a job that always breaks its connection still ends in the dead letters.
ALTER TABLE {{schema}}.jobs ADD COLUMN released integer NOT NULL DEFAULT 0 CHECK (released >= 0);
