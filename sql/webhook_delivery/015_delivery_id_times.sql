-- Delivery ids that carry their time (issue 23): the worker now makes UUID version 7 ids, whose
-- first 48 bits are the Unix time in milliseconds. A lookup by id adds the window these
-- functions give, and PostgreSQL then reads only the partitions of webhook_deliveries (and
-- delivery_attempts) that may hold it, instead of probing every day's index. Random ids (version
-- 4, made before) carry no time: their window is unbounded, every partition is probed.
--
-- The window is a day either side of the id's time: the id is made from the worker's clock just
-- before the insert whose created_at is the database's, so it allows for clocks a day apart.

-- The time a version 7 id carries; NULL for another version.
CREATE FUNCTION webhook_worker.delivery_id_time(id uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN pg_catalog.substr(id::text, 15, 1) = '7' THEN pg_catalog.to_timestamp(
        ('x' || pg_catalog.lpad(pg_catalog.replace(pg_catalog.left(id::text, 13), '-', ''), 16, '0'))::bit(64)::bigint
        / 1000.0) END
$$;

-- The earliest a delivery with one of these ids may have been created: '-infinity' if any id
-- carries no time.
CREATE FUNCTION webhook_worker.delivery_ids_since(ids uuid[]) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN pg_catalog.bool_and(t IS NOT NULL)
                THEN pg_catalog.to_timestamp(pg_catalog.date_part('epoch', pg_catalog.min(t)) - 86400)
                ELSE '-infinity'::timestamptz END
    FROM (SELECT webhook_worker.delivery_id_time(i) AS t FROM pg_catalog.unnest(ids) AS i) x
$$;

-- The latest, plus one: 'infinity' if any id carries no time.
CREATE FUNCTION webhook_worker.delivery_ids_until(ids uuid[]) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN pg_catalog.bool_and(t IS NOT NULL)
                THEN pg_catalog.to_timestamp(pg_catalog.date_part('epoch', pg_catalog.max(t)) + 86400)
                ELSE 'infinity'::timestamptz END
    FROM (SELECT webhook_worker.delivery_id_time(i) AS t FROM pg_catalog.unnest(ids) AS i) x
$$;
