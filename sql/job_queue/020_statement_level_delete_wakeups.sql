-- The wake-up for a key whose running job left the queue (003), once per statement instead of
-- once per job. The outcome of every delivery deletes its running keyed job, and a row trigger
-- called a function and inserted a wake-up row for each (a batch of 30 outcomes for one key
-- left 30 rows, which the next claim deleted and folded into one). A statement trigger reads the
-- deleted rows from a transition table and inserts one wake-up per key: the same keys woken, in
-- the same transaction, by the end of the same statement, as before.
DROP TRIGGER jobs_wake_concurrency_keys_delete ON {{schema}}.jobs;
DROP FUNCTION {{schema}}.wake_deleted_concurrency_key();

CREATE FUNCTION {{schema}}.wake_deleted_concurrency_keys() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO {{schema}}.concurrency_key_wakeups (kind, concurrency_key)
    SELECT DISTINCT d.kind, d.concurrency_key FROM deleted_jobs d
    WHERE d.state = 'running' AND d.concurrency_key IS NOT NULL
    ORDER BY 1, 2;
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION {{schema}}.wake_deleted_concurrency_keys() FROM PUBLIC;

CREATE TRIGGER jobs_wake_concurrency_keys_delete
    AFTER DELETE ON {{schema}}.jobs
    REFERENCING OLD TABLE AS deleted_jobs
    FOR EACH STATEMENT
    EXECUTE FUNCTION {{schema}}.wake_deleted_concurrency_keys();
