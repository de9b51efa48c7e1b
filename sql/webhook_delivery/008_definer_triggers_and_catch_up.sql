-- Triggers that run in other roles' statements write with the schema owner's rights, and an
-- integration.connected event that the optional trigger could not enqueue is enqueued later.
--
-- 1. The optional triggers (sql/optional/) ran their functions with the rights of the web app's
--    role, which has no grant on retired_secrets, and only INSERT on jobs: the old secret was
--    not kept, and (before 010) the event not enqueued, each with only a WARNING. Their functions
--    are now created here, so that they belong to the role that owns this schema (the one that
--    migrates) and run as it: SECURITY DEFINER, search_path pinned to pg_catalog and pg_temp,
--    every other name qualified. They get new names: the old ones were created by whoever ran
--    the optional files, and a migration cannot replace a function another role owns. The
--    optional files now attach the triggers to these and drop the old functions; until they are
--    run again, the old triggers keep running the old functions (and the catch-up below enqueues
--    what they miss).
-- 2. EXECUTE on them is revoked from PUBLIC: a trigger fires without it, but any role could
--    otherwise attach them to a table of its own and enqueue events, or retire secrets, as the
--    owner. The role that installs an optional trigger is granted EXECUTE by the schema owner
--    (docs/database.md).
-- 3. integration_connected_enqueued: one row per integration account for which an
--    integration.connected job was inserted, whoever inserted it (the trigger, the web app's
--    code, `enqueue`, a requeued dead letter, the catch-up). A job leaves no other trace once it
--    has run for an account whose user has no recipient, so this ledger is how the catch-up tells
--    "never enqueued" from "enqueued, and nobody to tell".

-- The dead-letter trigger updates deliveries whoever moves a job to the dead letters.
ALTER FUNCTION webhook_worker.fail_delivery_of_dead_letter()
    SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION webhook_worker.fail_delivery_of_dead_letter() FROM PUBLIC;

CREATE FUNCTION webhook_worker.enqueue_on_integration_account_insert() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
            pg_catalog.jsonb_build_object('integration_account_id', NEW.id, 'user_id', NEW."integratedById")
        );
    EXCEPTION WHEN OTHERS THEN
        -- Never fail the web app's insert (the seed's rule). The worker's catch-up enqueues the
        -- event later, and counts it (webhook_worker_integration_events_caught_up_total).
        RAISE WARNING 'webhook-worker: integration.connected was not enqueued for IntegrationAccount % (the worker''s catch-up will enqueue it): % (SQLSTATE %)',
            NEW.id, SQLERRM, SQLSTATE;
    END;
    RETURN NULL;  -- ignored for AFTER triggers
END;
$$;
COMMENT ON FUNCTION webhook_worker.enqueue_on_integration_account_insert() IS
    'Run by the optional trigger of sql/optional/enqueue_on_integration_account_insert.sql: enqueues integration.connected after an IntegrationAccount insert; never fails the insert.';
REVOKE EXECUTE ON FUNCTION webhook_worker.enqueue_on_integration_account_insert() FROM PUBLIC;

CREATE FUNCTION webhook_worker.keep_retired_secret_on_update() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    BEGIN
        INSERT INTO webhook_worker.retired_secrets (oauth_client_id, secret) VALUES (OLD.id, OLD."webhookSecret");
    EXCEPTION WHEN OTHERS THEN
        -- Never fail the web app's update. The message names the client, never a secret.
        RAISE WARNING 'webhook-worker: the previous webhook secret of client % was not kept: % (SQLSTATE %)',
            OLD.id, SQLERRM, SQLSTATE;
    END;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION webhook_worker.keep_retired_secret_on_update() IS
    'Run by the optional trigger of sql/optional/keep_retired_webhook_secrets.sql: keeps the previous webhook secret in retired_secrets.';
REVOKE EXECUTE ON FUNCTION webhook_worker.keep_retired_secret_on_update() FROM PUBLIC;

CREATE TABLE webhook_worker.integration_connected_enqueued (
    integration_account_id  text        PRIMARY KEY,
    -- The first such job.
    job_id                  bigint      NOT NULL,
    enqueued_at             timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_worker.integration_connected_enqueued IS
    'Integration accounts that had an integration.connected job inserted, however it was inserted; read by the worker''s catch-up, which deletes rows older than twice its window.';
CREATE INDEX integration_connected_enqueued_at_idx ON webhook_worker.integration_connected_enqueued (enqueued_at);

-- Row-level with a WHEN clause: the condition is checked without a call, so the other kinds'
-- inserts (every webhook.deliver job of a fan-out) cost nothing more.
CREATE FUNCTION webhook_worker.record_integration_connected_enqueued() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_catalog.jsonb_typeof(NEW.payload -> 'integration_account_id') = 'string' THEN
        INSERT INTO webhook_worker.integration_connected_enqueued (integration_account_id, job_id)
        VALUES (NEW.payload ->> 'integration_account_id', NEW.id)
        ON CONFLICT (integration_account_id) DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION webhook_worker.record_integration_connected_enqueued() FROM PUBLIC;

CREATE TRIGGER jobs_record_integration_connected
    AFTER INSERT ON webhook_worker.jobs
    FOR EACH ROW WHEN (NEW.kind = 'integration.connected')
    EXECUTE FUNCTION webhook_worker.record_integration_connected_enqueued();
