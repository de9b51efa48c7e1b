-- Hooks: what a program built on the queue does in the database when a job of one of its kinds
-- is inserted or dead-lettered, and the dead-letter reasons it adds, registered through the
-- queue instead of with triggers and constraints of its own on the queue's tables.
--
-- Before this, the deliveries' migrations put a trigger on jobs (to record every
-- integration.connected job, however inserted), a trigger on dead_letter_jobs (to mark a
-- delivery failed when its job is dead-lettered, by whoever: the worker, the lease reaper) and
-- rewrote the reasons' CHECK constraint. Each tied the program to the queue's table layout. Now
-- the queue's own triggers call the registered functions, and the program names none of its
-- tables.
--
-- A hook is a function of the program's, with a fixed signature per event:
--   inserted:       (job_id bigint, payload jsonb)                    after the inserting statement
--   dead_lettered:  (job_id bigint, payload jsonb, last_error text)   after the dead letter's insert
-- both in the transaction that did it (so a hook that fails, fails that transaction: a hook that
-- must never fail the caller catches its own errors). Register it with set_kind_hook(); the
-- queue's trigger functions run as the schema's owner (as 007's do), and they call only
-- functions that role owns, so a role that could write the registry cannot make the owner run
-- a function of its choosing.

CREATE TABLE {{schema}}.kind_hooks (
    kind      text NOT NULL,
    event     text NOT NULL CHECK (event IN ('inserted', 'dead_lettered')),
    -- Schema-qualified name of the function, without its argument list.
    function  text NOT NULL,
    PRIMARY KEY (kind, event)
);
COMMENT ON TABLE {{schema}}.kind_hooks IS
    'Functions the queue calls when a job of a kind is inserted or dead-lettered. Set with set_kind_hook(kind, event, function).';

CREATE FUNCTION {{schema}}.set_kind_hook(hook_kind text, hook_event text, hook_function text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    signature text := CASE hook_event
        WHEN 'inserted' THEN '(bigint, jsonb)'
        WHEN 'dead_lettered' THEN '(bigint, jsonb, text)'
    END;
BEGIN
    IF signature IS NULL THEN
        RAISE EXCEPTION 'unknown hook event %: expected inserted or dead_lettered', hook_event
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF hook_function IS NULL THEN
        DELETE FROM {{schema}}.kind_hooks WHERE kind = hook_kind AND event = hook_event;
        RETURN;
    END IF;
    IF to_regprocedure(hook_function || signature) IS NULL THEN
        RAISE EXCEPTION 'no function %', hook_function || signature
            USING ERRCODE = 'undefined_function';
    END IF;
    INSERT INTO {{schema}}.kind_hooks (kind, event, function) VALUES (hook_kind, hook_event, hook_function)
    ON CONFLICT (kind, event) DO UPDATE SET function = EXCLUDED.function;
END;
$$;
COMMENT ON FUNCTION {{schema}}.set_kind_hook(text, text, text) IS
    'Registers (or, with a NULL function, removes) the hook of a kind for an event: inserted (job_id bigint, payload jsonb) or dead_lettered (job_id bigint, payload jsonb, last_error text).';
REVOKE EXECUTE ON FUNCTION {{schema}}.set_kind_hook(text, text, text) FROM PUBLIC;

-- The function a hook names, if it exists with the event's signature and belongs to the role
-- this runs as (the schema's owner, in the SECURITY DEFINER triggers below).
CREATE FUNCTION {{schema}}.hook_procedure(hook_function text, signature text) RETURNS regprocedure
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.oid::regprocedure
    FROM pg_catalog.pg_proc p
    WHERE p.oid = pg_catalog.to_regprocedure(hook_function || signature)
      AND p.proowner = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
$$;
REVOKE EXECUTE ON FUNCTION {{schema}}.hook_procedure(text, text) FROM PUBLIC;

-- One statement-level trigger: an insert of many jobs (a fan-out) reads the registry once, and
-- costs nothing more when no inserted kind has a hook.
CREATE FUNCTION {{schema}}.run_inserted_hooks() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hook record;
    proc regprocedure;
    job record;
BEGIN
    FOR hook IN
        SELECT h.kind, h.function FROM {{schema}}.kind_hooks h
        WHERE h.event = 'inserted' AND EXISTS (SELECT 1 FROM inserted_jobs i WHERE i.kind = h.kind)
    LOOP
        proc := {{schema}}.hook_procedure(hook.function, '(bigint, jsonb)');
        IF proc IS NULL THEN
            RAISE WARNING 'job queue: the inserted hook of kind % (%) is not a function of the schema''s owner; skipped',
                hook.kind, hook.function;
            CONTINUE;
        END IF;
        FOR job IN SELECT i.id, i.payload FROM inserted_jobs i WHERE i.kind = hook.kind ORDER BY i.id LOOP
            EXECUTE pg_catalog.format('SELECT %s($1, $2)', proc::oid::regproc) USING job.id, job.payload;
        END LOOP;
    END LOOP;
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION {{schema}}.run_inserted_hooks() FROM PUBLIC;

CREATE TRIGGER jobs_run_inserted_hooks
    AFTER INSERT ON {{schema}}.jobs
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.run_inserted_hooks();

CREATE FUNCTION {{schema}}.run_dead_lettered_hook() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hook_function text;
    proc regprocedure;
BEGIN
    SELECT h.function INTO hook_function FROM {{schema}}.kind_hooks h
    WHERE h.kind = NEW.kind AND h.event = 'dead_lettered';
    IF hook_function IS NULL THEN
        RETURN NULL;
    END IF;
    proc := {{schema}}.hook_procedure(hook_function, '(bigint, jsonb, text)');
    IF proc IS NULL THEN
        RAISE WARNING 'job queue: the dead_lettered hook of kind % (%) is not a function of the schema''s owner; skipped',
            NEW.kind, hook_function;
        RETURN NULL;
    END IF;
    EXECUTE pg_catalog.format('SELECT %s($1, $2, $3)', proc::oid::regproc) USING NEW.job_id, NEW.payload, NEW.last_error;
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION {{schema}}.run_dead_lettered_hook() FROM PUBLIC;

CREATE TRIGGER dead_letter_jobs_run_hook
    AFTER INSERT ON {{schema}}.dead_letter_jobs
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.run_dead_lettered_hook();

-- Dead-letter reasons: the queue's two, and any a program adds with add_dead_letter_reason(),
-- each with what it means for the DBA reading the dead letters. Reasons already used (a
-- program's, added before this migration by changing the constraint) are kept, to be described
-- by that program's next migration.
CREATE TABLE {{schema}}.dead_letter_reasons (
    reason       text PRIMARY KEY CHECK (reason ~ '^[a-z][a-z0-9_]*$'),
    description  text NOT NULL
);
COMMENT ON TABLE {{schema}}.dead_letter_reasons IS
    'The reasons a dead letter may give (dead_letter_jobs.reason), and what each means. Add one with add_dead_letter_reason(reason, description).';
INSERT INTO {{schema}}.dead_letter_reasons (reason, description) VALUES
    ('attempts_exhausted', 'The job failed on every attempt it was allowed, or its lease ran out on the last one.'),
    ('permanent_failure', 'The handler said the job cannot succeed by retrying (bad payload, a refusal).');
INSERT INTO {{schema}}.dead_letter_reasons (reason, description)
SELECT DISTINCT d.reason, 'Used before reasons were registered.' FROM {{schema}}.dead_letter_jobs d
ON CONFLICT (reason) DO NOTHING;

-- The list in the CHECK constraint gives way to the registry. The constraint keeps its name, with
-- the registry's rule for a reason's spelling, because a program's older migration may still
-- replace it by name (the deliveries' 003 does, on a new database; their 010 drops it).
ALTER TABLE {{schema}}.dead_letter_jobs DROP CONSTRAINT dead_letter_jobs_reason_check;
ALTER TABLE {{schema}}.dead_letter_jobs ADD CONSTRAINT dead_letter_jobs_reason_check
    CHECK (reason ~ '^[a-z][a-z0-9_]*$');
ALTER TABLE {{schema}}.dead_letter_jobs ADD CONSTRAINT dead_letter_jobs_reason_fkey
    FOREIGN KEY (reason) REFERENCES {{schema}}.dead_letter_reasons (reason);

CREATE FUNCTION {{schema}}.add_dead_letter_reason(new_reason text, new_description text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO {{schema}}.dead_letter_reasons (reason, description) VALUES (new_reason, new_description)
    ON CONFLICT (reason) DO UPDATE SET description = EXCLUDED.description
$$;
REVOKE EXECUTE ON FUNCTION {{schema}}.add_dead_letter_reason(text, text) FROM PUBLIC;

-- Jobs of a kind snoozed for a reason (their last_error starting with `reason_prefix`, e.g.
-- 'waiting:') and sharing a concurrency key run now, in their order, and the workers are told:
-- for a program that snoozes jobs until something it watches changes (an endpoint's circuit
-- closing). The kind and key lead the keyed claim index.
CREATE FUNCTION {{schema}}.wake_snoozed(job_kind text, key text, reason_prefix text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    woken integer;
BEGIN
    UPDATE {{schema}}.jobs SET run_at = now()
    WHERE kind = job_kind AND concurrency_key = key AND state = 'available' AND run_at > now()
      AND starts_with(last_error, reason_prefix);
    GET DIAGNOSTICS woken = ROW_COUNT;
    IF woken > 0 THEN
        PERFORM pg_notify('{{channel}}', '');
    END IF;
    RETURN woken;
END;
$$;
COMMENT ON FUNCTION {{schema}}.wake_snoozed(text, text, text) IS
    'Runs now the waiting jobs of a kind and concurrency key whose last_error starts with reason_prefix; returns how many.';
