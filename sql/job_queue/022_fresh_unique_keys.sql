-- Fresh unique keys skip the duplicate check. Every row inserted with a unique_key ran
-- skip_duplicate_unique_key(), a PL/pgSQL trigger that looks the key up before the insert: it is
-- what lets a plain INSERT (the web app's) of a key already queued be skipped instead of failing.
-- It cost 26 µs a row, the largest part of a fan-out's insert of its deliveries' jobs, and those
-- jobs cannot be duplicates: their keys name deliveries made in the same transaction, whose ids
-- are new (the deliveries' primary key fails the transaction first if one is not).
--
-- So a statement that knows its keys are fresh says so for its own rows: it sets
-- `<schema>.fresh_unique_keys` to 'on' (set_config, local to the transaction) before its rows
-- are inserted and back to 'off' once they are (JobEnqueuer.insertFresh). The trigger does not
-- run for a row inserted while it is 'on'; the unique index still refuses a key that is taken,
-- failing the statement (the keys are not skipped: that would be a job lost). An insert made by
-- a trigger function (pg_trigger_depth() > 0) is checked whatever the setting says. Any other
-- insert, and any insert by a replica of an earlier version, is checked as before.
DROP TRIGGER jobs_skip_duplicate_unique_key ON {{schema}}.jobs;
CREATE TRIGGER jobs_skip_duplicate_unique_key
    BEFORE INSERT ON {{schema}}.jobs
    FOR EACH ROW
    WHEN (NEW.unique_key IS NOT NULL
          AND (pg_trigger_depth() > 0
               OR current_setting('{{schema}}.fresh_unique_keys', true) IS DISTINCT FROM 'on'))
    EXECUTE FUNCTION {{schema}}.skip_duplicate_unique_key();
