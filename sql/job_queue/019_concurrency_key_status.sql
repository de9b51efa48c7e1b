-- One row per key that has jobs or settings of its own: what the claim holds it to (its own
-- limit, NULL for the kind's; ordered or not) beside what it runs and what waits. For the
-- domain's pages and metrics (a receiving endpoint's current limit and deliveries in flight) and
-- for DBAs, in one read: a page listing keys no longer calls concurrency_key_is_ordered() per
-- row, and no code outside the queue reads concurrency_key_limits or jobs for it.
--
-- A view over the queue's own tables, so it costs nothing until read; a read groups the jobs
-- that have a key, as concurrency_key_depth does (the hot queue is small by design).
CREATE VIEW {{schema}}.concurrency_key_status AS
SELECT coalesce(d.kind, l.kind) AS kind,
       coalesce(d.concurrency_key, l.concurrency_key) AS concurrency_key,
       l.max_running,
       coalesce(l.ordered, false) AS ordered,
       coalesce(d.running, 0) AS running,
       coalesce(d.waiting, 0) AS waiting,
       coalesce(d.scheduled, 0) AS scheduled,
       d.oldest_run_at
FROM {{schema}}.concurrency_key_depth d
FULL JOIN {{schema}}.concurrency_key_limits l USING (kind, concurrency_key);

COMMENT ON VIEW {{schema}}.concurrency_key_status IS
    'Per kind and concurrency key: its own limit (NULL: the kind''s) and ordering, with the jobs running, waiting and scheduled now.';
