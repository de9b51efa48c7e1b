-- Kinds no replica claims until resumed; running jobs finish.
CREATE TABLE {{schema}}.paused_kinds (
    kind       text        PRIMARY KEY,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    paused_by  text
);

-- Pausing or resuming a kind wakes the replicas, so they notice within a poll at most.
CREATE FUNCTION {{schema}}.notify_paused_kinds() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{{channel}}', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER paused_kinds_notify AFTER INSERT OR DELETE ON {{schema}}.paused_kinds
    FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.notify_paused_kinds();

