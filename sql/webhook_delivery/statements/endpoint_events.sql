-- The operational events of webhook_worker.endpoint_events (EndpointEvents.swift).

-- name: recentEndpointEvents
-- The latest events, newest first: of one client ($1) or all (NULL), at most $2.
SELECT id, oauth_client_id, event, reason, delivery_id::text AS delivery_id, failing_since, created_at
FROM webhook_worker.endpoint_events
WHERE ($1::text IS NULL OR oauth_client_id = $1)
ORDER BY id DESC
LIMIT $2

-- name: pruneEndpointEvents
-- One batch of events recorded before $1, at most $2 of them.
DELETE FROM webhook_worker.endpoint_events WHERE id IN (
    SELECT id FROM webhook_worker.endpoint_events WHERE created_at < $1 LIMIT $2)
