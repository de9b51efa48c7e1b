-- History by time (issue 23): job_attempts, and any other append-only history table an owner
-- registers here, becomes range-partitioned on a timestamp, one partition per day by default,
-- with no DEFAULT partition (so that a day can be detached CONCURRENTLY). Retention drops a
-- whole partition instead of DELETEing its rows.
--
-- An existing table is converted online, in three migrations, each its own transaction:
--   015 (this one)  history_prepare: registers the table and adds a CHECK (col < T) NOT VALID,
--                   T being the second UTC midnight from now. Instant.
--   016             VALIDATE CONSTRAINT: one scan of the table under SHARE UPDATE EXCLUSIVE, which
--                   lets inserts and updates go on.
--   017             history_partition: renames the table to <name>_legacy, creates the partitioned
--                   table under the old name, and attaches the old one as its first partition,
--                   FROM (MINVALUE) TO (T). The validated CHECK proves the bound, so the attach
--                   scans nothing: a moment under ACCESS EXCLUSIVE. Then it adds daily partitions
--                   from T on. The legacy partition is dropped, whole, once T is past retention.

-- The registered history tables.
CREATE TABLE {{schema}}.history_tables (
    table_schema      name        NOT NULL,
    table_name        name        NOT NULL,
    -- The partition key: a timestamptz column that is NOT NULL and never updated.
    partition_column  name        NOT NULL,
    -- Column lists of the unique indexes each partition gets (a unique index of a partitioned
    -- table must include the partition key; these are unique within a partition).
    unique_keys       text[]      NOT NULL DEFAULT '{}',
    -- Storage parameters each partition gets (a partitioned table has none of its own).
    storage           text,
    -- Before the conversion (017): the bound of the CHECK that 015 added.
    legacy_until      timestamptz,
    PRIMARY KEY (table_schema, table_name)
);
COMMENT ON TABLE {{schema}}.history_tables IS
    'History tables partitioned by time; their partitions are created ahead and dropped past retention by the replicas.';

-- A partition bound as pg_get_expr writes it, as a time.
CREATE FUNCTION {{schema}}.history_bound(bound text) RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE bound WHEN 'MINVALUE' THEN '-infinity'::timestamptz
                      WHEN 'MAXVALUE' THEN 'infinity'::timestamptz
                      ELSE pg_catalog.btrim(bound, '''')::timestamptz END
$$;

-- Every partition of every registered table, with its bounds. detach_pending: a DETACH ...
-- CONCURRENTLY that did not finish (finish it with DETACH PARTITION ... FINALIZE).
CREATE VIEW {{schema}}.history_partitions AS
SELECT h.table_schema, h.table_name,
       c.relname AS partition_name,
       {{schema}}.history_bound(substring(b.expr FROM 'FROM \((.*)\) TO')) AS from_at,
       {{schema}}.history_bound(substring(b.expr FROM 'TO \((.*)\)$')) AS to_at,
       i.inhdetachpending AS detach_pending,
       pg_catalog.pg_total_relation_size(c.oid) AS bytes
FROM {{schema}}.history_tables h
JOIN pg_catalog.pg_namespace n ON n.nspname = h.table_schema
JOIN pg_catalog.pg_class p ON p.relnamespace = n.oid AND p.relname = h.table_name AND p.relkind = 'p'
JOIN pg_catalog.pg_inherits i ON i.inhparent = p.oid
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS expr) b;
COMMENT ON VIEW {{schema}}.history_partitions IS 'The partitions of the history tables, with their bounds and sizes.';

-- Registers a plain table for conversion and adds the CHECK that 016 validates and 017 relies on.
CREATE FUNCTION {{schema}}.history_prepare(
    tbl regclass, partition_column name, unique_keys text[], storage text
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s name; t name;
    until timestamptz := (date_trunc('day', now() AT TIME ZONE 'UTC') + interval '2 days') AT TIME ZONE 'UTC';
BEGIN
    SELECT n.nspname, c.relname INTO s, t
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    INSERT INTO {{schema}}.history_tables (table_schema, table_name, partition_column, unique_keys, storage, legacy_until)
    VALUES (s, t, partition_column, unique_keys, storage, until);
    EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I CHECK (%I < %L) NOT VALID',
                   s, t, t || '_history_bound', partition_column, until);
END;
$$;

-- Creates the partitions missing up to `at` (now) + ahead, each `step` long, after the last one
-- of each registered table (from the UTC midnight of `at` for a table with none); returns their
-- names. A partition is created as a plain table and
-- then attached, which takes SHARE UPDATE EXCLUSIVE on the parent (inserts go on) where
-- CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE. Replicas take turns on a
-- transaction-level advisory lock. Runs as the schema's owner: the worker's role may not
-- create tables.
CREATE FUNCTION {{schema}}.create_history_partitions(step interval, ahead interval, at timestamptz DEFAULT now())
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    h record;
    upper timestamptz;
    utc timestamp;
    part name;
    k text;
BEGIN
    IF step < interval '1 hour' OR step > interval '31 days' THEN
        RAISE EXCEPTION 'history partitions must be from 1 hour to 31 days long, not %', step;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('{{schema}}.history_partitions'));
    FOR h IN SELECT * FROM {{schema}}.history_tables WHERE legacy_until IS NULL
             ORDER BY table_schema, table_name LOOP
        SELECT max(to_at) INTO upper FROM {{schema}}.history_partitions
        WHERE table_schema = h.table_schema AND table_name = h.table_name;
        IF upper = 'infinity' THEN
            CONTINUE;  -- a DBA attached a partition without an upper bound
        END IF;
        upper := coalesce(upper, date_trunc('day', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC');
        WHILE upper < at + ahead LOOP
            utc := upper AT TIME ZONE 'UTC';
            part := h.table_name || '_p' || to_char(utc, 'YYYYMMDD')
                    || CASE WHEN utc::time = '00:00' THEN '' ELSE to_char(utc, '"_"HH24MI') END;
            EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
                           ' INCLUDING STORAGE INCLUDING COMMENTS)', h.table_schema, part, h.table_schema, h.table_name);
            IF h.storage IS NOT NULL THEN
                EXECUTE format('ALTER TABLE %I.%I SET (%s)', h.table_schema, part, h.storage);
            END IF;
            FOREACH k IN ARRAY h.unique_keys LOOP
                EXECUTE format('CREATE UNIQUE INDEX ON %I.%I (%s)', h.table_schema, part, k);
            END LOOP;
            EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                           h.table_schema, h.table_name, h.table_schema, part, upper, upper + step);
            RETURN NEXT h.table_schema || '.' || part;
            upper := upper + step;
        END LOOP;
    END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION {{schema}}.create_history_partitions(interval, interval, timestamptz) FROM PUBLIC;

-- Partitions being detached CONCURRENTLY (outside a transaction, by a replica whose role owns
-- the tables): recorded first, so that whatever a killed connection leaves (a pending detach,
-- a detached table not dropped yet) the next upkeep finishes. A table a DBA detached to keep is
-- never recorded here, and is kept.
CREATE TABLE {{schema}}.history_detaching (
    table_schema    name        NOT NULL,
    partition_name  name        NOT NULL,
    table_name      name        NOT NULL,
    since           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_schema, partition_name)
);

-- Drops the partitions of the registered tables that end at or before `older_than`, in this
-- transaction; returns their names. First it finishes what a killed upkeep left: a detach still
-- pending (DETACH ... FINALIZE) and recorded tables detached but not dropped. Then, for each
-- partition past `older_than`: a pending detach is finalized; with `detach` a plain DETACH
-- takes ACCESS EXCLUSIVE on the parent for a moment (the caller sets lock_timeout, so that it
-- gives up rather than queue inserts behind a long reader; the next upkeep tries again).
-- Without `detach`, only what is detached already is dropped: the caller detaches CONCURRENTLY.
-- Runs as the schema's owner.
CREATE FUNCTION {{schema}}.drop_history_partitions(older_than timestamptz, detach boolean DEFAULT true)
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('{{schema}}.history_partitions'));
    FOR p IN SELECT d.table_schema, d.table_name, d.partition_name, c.oid AS relid,
                    i.inhdetachpending AS pending, i.inhrelid IS NOT NULL AS attached
             FROM {{schema}}.history_detaching d
             LEFT JOIN pg_namespace n ON n.nspname = d.table_schema
             LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = d.partition_name
             LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LOOP
        IF p.pending THEN
            EXECUTE format('ALTER TABLE %I.%I DETACH PARTITION %I.%I FINALIZE',
                           p.table_schema, p.table_name, p.table_schema, p.partition_name);
        ELSIF p.attached THEN
            CONTINUE;  -- the detach rolled back: it is past retention still, and handled below
        END IF;
        -- Only a table named as the upkeep names partitions is dropped.
        IF p.relid IS NOT NULL AND EXISTS (
            SELECT 1 FROM {{schema}}.history_tables h
            WHERE h.table_schema = p.table_schema AND h.table_name = p.table_name
              AND (p.partition_name LIKE h.table_name || '\_p%' OR p.partition_name = h.table_name || '_legacy')) THEN
            EXECUTE format('DROP TABLE %I.%I', p.table_schema, p.partition_name);
            RETURN NEXT p.table_schema || '.' || p.partition_name;
        END IF;
        DELETE FROM {{schema}}.history_detaching
        WHERE table_schema = p.table_schema AND partition_name = p.partition_name;
    END LOOP;
    FOR p IN SELECT table_schema, table_name, partition_name, detach_pending
             FROM {{schema}}.history_partitions
             WHERE to_at <= older_than ORDER BY to_at LOOP
        IF p.detach_pending THEN
            EXECUTE format('ALTER TABLE %I.%I DETACH PARTITION %I.%I FINALIZE',
                           p.table_schema, p.table_name, p.table_schema, p.partition_name);
        ELSIF detach THEN
            EXECUTE format('ALTER TABLE %I.%I DETACH PARTITION %I.%I',
                           p.table_schema, p.table_name, p.table_schema, p.partition_name);
        ELSE
            CONTINUE;
        END IF;
        EXECUTE format('DROP TABLE %I.%I', p.table_schema, p.partition_name);
        RETURN NEXT p.table_schema || '.' || p.partition_name;
    END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION {{schema}}.drop_history_partitions(timestamptz, boolean) FROM PUBLIC;

-- Converts a table that history_prepare registered and whose CHECK is validated: see the top.
CREATE FUNCTION {{schema}}.history_partition(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    h record;
    legacy name;
    ix record;
    col record;
    last bigint;
    seq text;
BEGIN
    SELECT ht.* INTO STRICT h FROM {{schema}}.history_tables ht
    JOIN pg_class c ON c.relname = ht.table_name
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = ht.table_schema
    WHERE c.oid = tbl AND ht.legacy_until IS NOT NULL;
    legacy := h.table_name || '_legacy';
    EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', h.table_schema, h.table_name, legacy);
    EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY'
                   ' INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE (%I)',
                   h.table_schema, h.table_name, h.table_schema, legacy, h.partition_column);
    EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', h.table_schema, h.table_name, h.table_name || '_history_bound');
    EXECUTE format('COMMENT ON TABLE %I.%I IS %L', h.table_schema, h.table_name, obj_description(tbl, 'pg_class'));
    -- Identity columns: the new table's sequence continues the old one's, which goes with it.
    FOR col IN SELECT attname FROM pg_attribute WHERE attrelid = tbl AND attidentity <> '' LOOP
        seq := pg_get_serial_sequence(format('%I.%I', h.table_schema, legacy), col.attname);
        EXECUTE format('SELECT last_value FROM %s', seq) INTO last;
        EXECUTE format('ALTER TABLE %I.%I ALTER COLUMN %I DROP IDENTITY', h.table_schema, legacy, col.attname);
        seq := pg_get_serial_sequence(format('%I.%I', h.table_schema, h.table_name), col.attname);
        PERFORM setval(seq, last);
        EXECUTE format('ALTER SEQUENCE %s RENAME TO %I', seq, h.table_name || '_' || col.attname || '_seq');
    END LOOP;
    -- The old table's plain indexes become the new table's (same definitions, same names): the
    -- attach adopts them instead of building new ones. Its unique ones stay its own.
    FOR ix IN SELECT i.indexrelid, c.relname, pg_get_indexdef(i.indexrelid) AS def
              FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = tbl AND NOT i.indisunique LOOP
        EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', h.table_schema, ix.relname, ix.relname || '_legacy');
        EXECUTE format('CREATE INDEX %I ON %I.%I USING %s', ix.relname, h.table_schema, h.table_name,
                       substring(ix.def FROM ' USING (.*)$'));
    END LOOP;
    EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (MINVALUE) TO (%L)',
                   h.table_schema, h.table_name, h.table_schema, legacy, h.legacy_until);
    EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT %I', h.table_schema, legacy, h.table_name || '_history_bound');
    UPDATE {{schema}}.history_tables SET legacy_until = NULL
    WHERE table_schema = h.table_schema AND table_name = h.table_name;
END;
$$;
REVOKE EXECUTE ON FUNCTION {{schema}}.history_partition(regclass) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION {{schema}}.history_prepare(regclass, name, text[], text) FROM PUBLIC;

SELECT {{schema}}.history_prepare('{{schema}}.job_attempts', 'finished_at', ARRAY['id'], NULL);
