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
-- WARNING and the update goes through without keeping the old secret.
--
-- Without the trigger, do the same from the web app's code or by hand:
--     printf '%s' "$OLD_SECRET" | webhook-worker secrets retire --client CLIENT_ID

CREATE OR REPLACE FUNCTION webhook_worker.keep_retired_webhook_secret() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        INSERT INTO webhook_worker.retired_secrets (oauth_client_id, secret) VALUES (OLD.id, OLD."webhookSecret");
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'webhook-worker: the previous webhook secret of client % was not kept: %', OLD.id, SQLERRM;
    END;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS webhook_worker_keep_retired_secret ON "OAuthClient";
CREATE TRIGGER webhook_worker_keep_retired_secret
    AFTER UPDATE OF "webhookSecret" ON "OAuthClient"
    FOR EACH ROW
    WHEN (OLD."webhookSecret" IS DISTINCT FROM NEW."webhookSecret" AND coalesce(OLD."webhookSecret", '') <> '')
    EXECUTE FUNCTION webhook_worker.keep_retired_webhook_secret();
