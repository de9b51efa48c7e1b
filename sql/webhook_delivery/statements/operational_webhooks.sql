-- The relay that POSTs operational events to the web app (OperationalWebhooks.swift): each event
-- goes to one replica at a time (SKIP LOCKED, then a lease in post_after), and is marked posted
-- on a 2xx or given a later post_after on a failure.

-- name: takeOperationalEvents
-- At most $1 events not yet posted, due, and recorded within the last $3, oldest first; each is
-- leased to the caller for $2 and counts one more attempt.
UPDATE webhook_worker.endpoint_events e
SET post_after = now() + $2::interval, post_attempts = e.post_attempts + 1
WHERE e.id IN (
    SELECT id FROM webhook_worker.endpoint_events
    WHERE posted_at IS NULL AND created_at > now() - $3::interval
      AND (post_after IS NULL OR post_after <= now())
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED)
RETURNING e.id, e.oauth_client_id, e.event, e.reason, e.delivery_id::text AS delivery_id, e.failing_since,
    e.created_at, e.post_attempts

-- name: markOperationalEventsPosted
-- The events $1 reached the web app.
UPDATE webhook_worker.endpoint_events SET posted_at = now(), post_after = NULL, post_error = NULL
WHERE id = ANY($1::bigint[]) AND posted_at IS NULL

-- name: retryOperationalEvents
-- The events $1 were not taken: try each again after its wait $2, with its error $3.
UPDATE webhook_worker.endpoint_events e SET post_after = now() + f.wait, post_error = f.error
FROM unnest($1::bigint[], $2::interval[], $3::text[]) AS f(id, wait, error)
WHERE e.id = f.id AND e.posted_at IS NULL
