-- OPTIONAL: enqueue integration.connected from the database, for a web app that cannot change
-- its code. Not a migration: `webhook-worker migrate` never runs this file. A DBA installs it by
-- hand, after `webhook-worker migrate` has created webhook_worker.jobs:
--
--     psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/optional/enqueue_on_integration_account_insert.sql
--
-- What it does: after every INSERT into the web app's "IntegrationAccount" table, for a row that
-- is active and not deleted, it inserts one job
--
--     kind     'integration.connected'
--     payload  {"integration_account_id": NEW.id, "user_id": NEW."integratedById"}
--
-- into webhook_worker.jobs, in the web app's own transaction: the job becomes visible (and the
-- workers are woken) when that transaction commits, and disappears with it if it rolls back.
--
-- It never fails the web app's insert. The enqueue runs inside BEGIN ... EXCEPTION WHEN OTHERS:
-- any error (jobs table missing, privilege revoked, a column renamed by a later Prisma migration,
-- the jobs table locked for more than 2 s) is turned into a WARNING in the server log and the
-- client's notices, and the integration account is inserted without its event. Two limits of
-- PL/pgSQL remain: a statement cancel or statement_timeout hitting while the enqueue runs is not
-- caught (WHEN OTHERS never catches query_canceled), and the wake-up NOTIFY is queued at commit,
-- so a NOTIFY queue that is completely full (a listener stuck for a very long time) fails the
-- commit, as any NOTIFY would.
--
-- Only INSERTs are seen: an account that is inserted inactive and activated later, or
-- undeleted, gets no event from this trigger.
--
-- Use this trigger or enqueue from the web app's code, not both: two jobs for one account mean
-- two deliveries, with different delivery ids, to every receiver.
--
-- Privileges: the function runs as the role that inserts into "IntegrationAccount" (it is not
-- SECURITY DEFINER). That role needs what a plain INSERT into the queue needs:
--
--     GRANT USAGE ON SCHEMA webhook_worker TO web_app_role;
--     GRANT INSERT ON webhook_worker.jobs TO web_app_role;
--
-- Without them the account is still inserted; the event is not, and a WARNING says why.
--
-- Safe to run again: it replaces the function and the trigger, in one transaction.
--
-- The table is named without a schema, as the worker names it: run this with the search_path
-- that finds the web app's tables (public by default).

BEGIN;

CREATE OR REPLACE FUNCTION webhook_worker.enqueue_integration_connected_on_insert()
RETURNS trigger
LANGUAGE plpgsql
-- Wait at most 2 s for a lock on webhook_worker.jobs (e.g. while an ALTER holds it), then give
-- up with an error the handler below turns into a warning. Restored when the function returns.
SET lock_timeout = '2s'
AS $$
BEGIN
    BEGIN
        -- Checked here, not in a WHEN clause on the trigger: a WHEN clause would make these
        -- columns depend on the trigger and block the web app's migrations from dropping them.
        IF NEW."isActive" IS NOT TRUE OR NEW.deleted IS NOT NULL THEN
            RETURN NULL;
        END IF;
        INSERT INTO webhook_worker.jobs (kind, payload)
        VALUES (
            'integration.connected',
            jsonb_build_object('integration_account_id', NEW.id, 'user_id', NEW."integratedById")
        );
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'webhook-worker: integration.connected was not enqueued for IntegrationAccount %: % (SQLSTATE %)',
            NEW.id, SQLERRM, SQLSTATE;
    END;
    RETURN NULL;  -- ignored for AFTER triggers
END;
$$;

COMMENT ON FUNCTION webhook_worker.enqueue_integration_connected_on_insert() IS
    'Optional (sql/optional/enqueue_on_integration_account_insert.sql): enqueues integration.connected after an IntegrationAccount insert; never fails the insert.';

DROP TRIGGER IF EXISTS webhook_worker_enqueue_integration_connected ON "IntegrationAccount";

CREATE TRIGGER webhook_worker_enqueue_integration_connected
    AFTER INSERT ON "IntegrationAccount"
    FOR EACH ROW
    EXECUTE FUNCTION webhook_worker.enqueue_integration_connected_on_insert();

COMMIT;

-- To remove it (nothing else depends on these two objects):
--
--     BEGIN;
--     DROP TRIGGER IF EXISTS webhook_worker_enqueue_integration_connected ON "IntegrationAccount";
--     DROP FUNCTION IF EXISTS webhook_worker.enqueue_integration_connected_on_insert();
--     COMMIT;
--
-- Jobs it already enqueued stay in webhook_worker.jobs and are delivered as usual.
