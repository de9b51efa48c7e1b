-- The queue's triggers keep its own bookkeeping (concurrency_key_wakeups) and read the queue
-- (the unique_key check), but they ran with the rights of whoever inserted or changed a job. A
-- role granted only what enqueueing needs (USAGE on the schema, INSERT on jobs) could not insert
-- at all: every insert fires the wake-up trigger, and its INSERT into concurrency_key_wakeups
-- was refused (a privilege is checked even for a statement that writes no row). Granting
-- callers the bookkeeping tables would let them corrupt the claim's state, so these functions
-- now run as their owner, the role that owns the schema.
--
-- SECURITY DEFINER with a pinned search_path (pg_catalog first, pg_temp last): every name in
-- the bodies is schema-qualified, and the caller's search_path cannot put a table, function or
-- operator of its own in front of them. EXECUTE is revoked from PUBLIC: a trigger fires without
-- it (PostgreSQL checks EXECUTE when a trigger is created, not when it fires), and without the
-- revoke any role could attach these functions to a table of its own and write the bookkeeping
-- with the owner's rights.
--
-- notify_jobs_inserted() and notify_paused_kinds() touch no table (pg_notify needs no
-- privilege): they keep running as the caller.

ALTER FUNCTION {{schema}}.skip_duplicate_unique_key()
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION {{schema}}.wake_inserted_concurrency_keys()
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION {{schema}}.wake_updated_concurrency_key()
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION {{schema}}.wake_deleted_concurrency_key()
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

REVOKE EXECUTE ON FUNCTION {{schema}}.skip_duplicate_unique_key() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{schema}}.wake_inserted_concurrency_keys() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{schema}}.wake_updated_concurrency_key() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{schema}}.wake_deleted_concurrency_key() FROM PUBLIC;
