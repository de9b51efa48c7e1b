-- Releases are capped and backed off; a requeued dead letter keeps its attempt limit.

-- Times the job was put back without spending an attempt because the database failed, not the
-- job (a terminated backend, a statement or lock timeout). Each such release waits longer
-- (growing, capped, jittered), and past the worker's cap a database failure counts as a failed
-- attempt, so a job that always breaks its connection still ends in the dead letters.
ALTER TABLE webhook_worker.jobs ADD COLUMN released integer NOT NULL DEFAULT 0 CHECK (released >= 0);

-- Requeued with fresh attempts and the attempt limit it died with (its own, or the retry
-- policy's at the time), instead of whatever the policy says now.
CREATE OR REPLACE FUNCTION webhook_worker.requeue_dead_letter(dead_letter_id bigint)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    d webhook_worker.dead_letter_jobs;
    new_id bigint;
BEGIN
    SELECT * INTO d FROM webhook_worker.dead_letter_jobs WHERE id = dead_letter_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dead letter % does not exist', dead_letter_id USING ERRCODE = 'no_data_found';
    END IF;
    IF d.requeued_at IS NOT NULL THEN
        RAISE EXCEPTION 'dead letter % was already requeued as job %', dead_letter_id, d.requeued_job_id
            USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO webhook_worker.jobs (kind, payload, priority, max_attempts, unique_key)
    VALUES (d.kind, d.payload, d.priority, d.max_attempts, d.unique_key)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        RAISE EXCEPTION 'a job with unique key % is already queued', d.unique_key USING ERRCODE = 'unique_violation';
    END IF;
    UPDATE webhook_worker.dead_letter_jobs SET requeued_at = now(), requeued_job_id = new_id WHERE id = dead_letter_id;
    RETURN new_id;
END;
$$;
