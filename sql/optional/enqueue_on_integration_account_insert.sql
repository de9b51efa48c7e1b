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
-- It never fails the web app's insert, and never loses the event. The enqueue runs inside BEGIN
-- ... EXCEPTION WHEN OTHERS: any error (the jobs table locked for more than 2 s, a column renamed
-- by a later Prisma migration, a full disk) is turned into a WARNING in the server log and the
-- client's notices, and the integration account is inserted without its job. The worker's
-- catch-up then finds the account (active, not deleted, created within --catch-up-window and at
-- least one --catch-up-interval ago, with no integration.connected job ever inserted for it) and
-- enqueues the event, counted by webhook_worker_integration_events_caught_up_total, which an alert
-- rule watches. Two limits of PL/pgSQL remain: a statement cancel or statement_timeout hitting
-- while the enqueue runs is not caught (WHEN OTHERS never catches query_canceled), and the wake-up
-- NOTIFY is queued at commit, so a NOTIFY queue that is completely full (a listener stuck for a
-- very long time) fails the commit, as any NOTIFY would.
--
-- Only INSERTs are seen: an account that is inserted inactive and activated later, or
-- undeleted, gets no event from this trigger.
--
-- Use this trigger or enqueue from the web app's code, not both: two jobs for one account mean
-- two deliveries, with different delivery ids, to every receiver.
--
-- Privileges. The trigger's function, webhook_worker.enqueue_on_integration_account_insert(), is
-- created by `webhook-worker migrate` (the deliveries' migration 008) and runs with the rights
-- of the role that owns the schema webhook_worker (SECURITY DEFINER): the web app's role needs
-- no grant on the queue for it. Run this file as the owner of "IntegrationAccount" (dropping a trigger needs
-- it) after the schema's owner has allowed that role to attach the function:
--
--     GRANT EXECUTE ON FUNCTION webhook_worker.enqueue_on_integration_account_insert() TO web_app_owner;
--
-- or as a superuser.
--
-- Safe to run again: it replaces the trigger, in one transaction. Before 012 this file created
-- the function itself (webhook_worker.enqueue_integration_connected_on_insert(), run with the
-- web app's rights); once this file has run again nothing calls it, and its owner may drop it.
--
-- The table is named without a schema, as the worker names it: run this with the search_path
-- that finds the web app's tables (public by default).

BEGIN;

DROP TRIGGER IF EXISTS webhook_worker_enqueue_integration_connected ON "IntegrationAccount";

CREATE TRIGGER webhook_worker_enqueue_integration_connected
    AFTER INSERT ON "IntegrationAccount"
    FOR EACH ROW
    EXECUTE FUNCTION webhook_worker.enqueue_on_integration_account_insert();

COMMIT;

-- To remove it:
--
--     DROP TRIGGER IF EXISTS webhook_worker_enqueue_integration_connected ON "IntegrationAccount";
--
-- (The function stays: it belongs to the worker's schema, and nothing calls it.)
--
-- Jobs it already enqueued stay in webhook_worker.jobs and are delivered as usual.
