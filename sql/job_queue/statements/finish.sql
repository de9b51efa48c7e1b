-- The worker's statements that end attempts, each for a batch (the Finisher runs them). {{schema}}
-- is the queue's schema. Each `-- name:` line starts a statement, prepared as <schema>.<name>.
--
-- Every one is guarded by locked_by and attempt, so a replica that lost its lease changes
-- nothing. The guards test locked_by but not state = 'running': every way out of running clears
-- locked_by, so the first implies the second, and leaving state out keeps the planner on the
-- primary key (with it, stale statistics can make jobs_lease_idx look cheaper, and the statement
-- then visits every running job of every replica).
--
-- Every time is the database's: started_at is the claim's attempted_at, and finished_at is
--     greatest(coalesce(j.attempted_at, now()), clock_timestamp() - f.ago)
-- the database's clock when the outcome is written less f.ago, how long ago the handler returned
-- as the worker measured it (outcomes wait a little to be written together). A retry's run_at is
-- that finished_at plus the wait, so the wait counts from the attempt's end, as the attempts'
-- rows show it, however long the write waited (counting from now(), the transaction's start, a
-- write slowed by a busy machine showed a next attempt starting early by the rows). Leases use the
-- same clock, so a replica whose clock is off cannot schedule early or late.
--
-- Parameters: $1 ids, $2 attempts, $3 this replica's worker id, then per statement.

-- name: completeJobs
-- $4 ago.
WITH f AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $4::interval[]) AS f(id, attempt, ago)
), done AS (
    DELETE FROM {{schema}}.jobs j USING f
    WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
    RETURNING j.id, j.kind, j.attempt, j.attempted_at,
        greatest(coalesce(j.attempted_at, now()), clock_timestamp() - f.ago) AS finished_at
)
INSERT INTO {{schema}}.job_attempts (job_id, kind, attempt, worker_id, started_at, finished_at, outcome)
SELECT id, kind, attempt, $3, coalesce(attempted_at, finished_at), finished_at, 'succeeded' FROM done
RETURNING job_id

-- name: cancelJobs
-- $4 ago, $5 error.
WITH f AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $4::interval[], $5::text[]) AS f(id, attempt, ago, error)
), done AS (
    DELETE FROM {{schema}}.jobs j USING f
    WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
    RETURNING j.id, j.kind, j.attempt, j.attempted_at,
        greatest(coalesce(j.attempted_at, now()), clock_timestamp() - f.ago) AS finished_at, f.error
)
INSERT INTO {{schema}}.job_attempts
    (job_id, kind, attempt, worker_id, started_at, finished_at, outcome, error)
SELECT id, kind, attempt, $3, coalesce(attempted_at, finished_at), finished_at, 'cancelled', error FROM done
RETURNING job_id

-- name: retryJobs
-- $4 ago, $5 error, $6 wait: the job runs again after it.
WITH f AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $4::interval[], $5::text[], $6::interval[])
        AS f(id, attempt, ago, error, wait)
), back AS (
    UPDATE {{schema}}.jobs j
    SET state = 'available', locked_by = NULL, locked_until = NULL,
        run_at = greatest(coalesce(j.attempted_at, now()), clock_timestamp() - f.ago) + f.wait,
        last_error = f.error
    FROM f
    WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
    RETURNING j.id, j.kind, j.attempt, j.attempted_at,
        greatest(coalesce(j.attempted_at, now()), clock_timestamp() - f.ago) AS finished_at, f.error
)
INSERT INTO {{schema}}.job_attempts
    (job_id, kind, attempt, worker_id, started_at, finished_at, outcome, error)
SELECT id, kind, attempt, $3, coalesce(attempted_at, finished_at), finished_at, 'failed', error FROM back
RETURNING job_id

-- name: releaseJobs
-- Back to the queue without spending the attempt. $4 ago, $5 error, $6 wait: with a wait (a
-- database failure), the job runs again after it and released counts one more; without
-- (shutdown), it keeps its place in the queue.
WITH f AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $4::interval[], $5::text[], $6::interval[])
        AS f(id, attempt, ago, error, wait)
), back AS (
    UPDATE {{schema}}.jobs j
    SET state = 'available', locked_by = NULL, locked_until = NULL, attempt = j.attempt - 1,
        run_at = CASE WHEN f.wait IS NULL THEN j.run_at ELSE now() + f.wait END,
        released = j.released + CASE WHEN f.wait IS NULL THEN 0 ELSE 1 END
    FROM f
    WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
    RETURNING j.id, j.kind, f.attempt, j.attempted_at,
        greatest(coalesce(j.attempted_at, now()), clock_timestamp() - f.ago) AS finished_at, f.error
)
INSERT INTO {{schema}}.job_attempts
    (job_id, kind, attempt, worker_id, started_at, finished_at, outcome, error)
SELECT id, kind, attempt, $3, coalesce(attempted_at, finished_at), finished_at, 'released', error
FROM back
RETURNING job_id

-- name: snoozeJobs
-- Not attempted: back to the queue after $5 wait, the attempt not counted and no attempt row
-- written; $4 reason goes to last_error.
WITH f AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $4::text[], $5::interval[]) AS f(id, attempt, reason, wait)
)
UPDATE {{schema}}.jobs j
SET state = 'available', locked_by = NULL, locked_until = NULL, attempt = j.attempt - 1,
    run_at = now() + f.wait, last_error = f.reason
FROM f
WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
RETURNING j.id AS job_id

-- name: deadLetterJobs
-- $4 ago, $5 error, $6 reason, $7 the max attempts in effect.
WITH f AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $4::interval[], $5::text[], $6::text[], $7::int[])
        AS f(id, attempt, ago, error, reason, max_attempts)
), dead AS (
    DELETE FROM {{schema}}.jobs j USING f
    WHERE j.id = f.id AND j.attempt = f.attempt AND j.locked_by = $3
    RETURNING j.*, greatest(coalesce(j.attempted_at, now()), clock_timestamp() - f.ago) AS finished_at,
        f.error, f.reason, f.max_attempts AS effective_max_attempts
), letters AS (
    INSERT INTO {{schema}}.dead_letter_jobs
        (job_id, kind, payload, priority, attempts, max_attempts, reason, last_error, unique_key,
         concurrency_key, created_at, dead_at)
    SELECT id, kind, payload, priority, attempt, effective_max_attempts, reason, error, unique_key,
           concurrency_key, created_at, finished_at
    FROM dead
)
INSERT INTO {{schema}}.job_attempts
    (job_id, kind, attempt, worker_id, started_at, finished_at, outcome, error)
SELECT id, kind, attempt, $3, coalesce(attempted_at, finished_at), finished_at, 'failed', error FROM dead
RETURNING job_id
