-- OPTIONAL: keep a client's previous webhook secret when the web app changes it, so that the
-- worker signs with both during the overlap (--secret-overlap, 24 h by default). Not a
-- migration: `webhook-worker migrate` never runs this file. A DBA installs it by hand, after
-- `webhook-worker migrate` has created webhook_worker.retired_secrets:
--
--     psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f sql/optional/keep_retired_webhook_secrets.sql
--
-- What it does: after an UPDATE of "OAuthClient"."webhookSecret" that changes a non-empty
-- secret, it inserts the old one into webhook_worker.retired_secrets, in the web app's own
-- transaction. Like the enqueue trigger, it never fails the web app's update: any error becomes a
-- WARNING and the update goes through without keeping the old secret (then retire it by hand,
-- as below).
--
-- Without the trigger, do the same from the web app's code or by hand:
--     printf '%s' "$OLD_SECRET" | webhook-worker secrets retire --client CLIENT_ID

-- Privileges. The trigger's function, webhook_worker.keep_retired_secret_on_update(), is created
-- by `webhook-worker migrate` (the deliveries' migration 008) and runs with the rights of the
-- role that owns the schema webhook_worker (SECURITY DEFINER): the web app's role, which changes
-- the secret, needs no grant on retired_secrets. Run this file as the owner of "OAuthClient" after the schema's owner
-- has allowed that role to attach the function:
--
--     GRANT EXECUTE ON FUNCTION webhook_worker.keep_retired_secret_on_update() TO web_app_owner;
--
-- or as a superuser. Safe to run again: it replaces the trigger, in one transaction. Before 012
-- this file created the function itself (webhook_worker.keep_retired_webhook_secret(), run with
-- the web app's rights); once this file has run again nothing calls it, and its owner may drop it.
--
-- To remove it: DROP TRIGGER IF EXISTS webhook_worker_keep_retired_secret ON "OAuthClient";

BEGIN;

DROP TRIGGER IF EXISTS webhook_worker_keep_retired_secret ON "OAuthClient";
CREATE TRIGGER webhook_worker_keep_retired_secret
    AFTER UPDATE OF "webhookSecret" ON "OAuthClient"
    FOR EACH ROW
    WHEN (OLD."webhookSecret" IS DISTINCT FROM NEW."webhookSecret" AND coalesce(OLD."webhookSecret", '') <> '')
    EXECUTE FUNCTION webhook_worker.keep_retired_secret_on_update();

COMMIT;
