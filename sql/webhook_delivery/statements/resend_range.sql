-- Resending the deliveries of a time range (Deliveries+ResendRange.swift).

-- name: resendRangePage
-- One batch of the deliveries a resend by range takes, in (created_at, delivery_id) order: of
-- OAuth client $1, created in [$6, $7), with status $2, user $3, event $4 and integration account
-- $5 when given, after the cursor ($8, $9; NULL for the first batch); at most $10. The range's
-- bounds are plain parameters on the partition key, so only its partitions are read; the client's
-- index (oauth_client_id, created_at) finds the rows. The cursor comes back as text, exact to the
-- microsecond (a float of seconds is not).
SELECT delivery_id, oauth_client_id, created_at::text AS cursor_at
FROM webhook_worker.webhook_deliveries
WHERE oauth_client_id = $1
  AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR user_id = $3)
  AND ($4::text IS NULL OR event = $4) AND ($5::text IS NULL OR integration_account_id = $5)
  AND created_at >= $6::timestamptz AND created_at < $7::timestamptz
  AND ($8::timestamptz IS NULL OR (created_at, delivery_id) > ($8::timestamptz, $9::uuid))
ORDER BY created_at, delivery_id
LIMIT $10

-- name: resendRangeMarkPending
-- The deliveries $1 that got a job in this transaction become pending again; $2 is the range's
-- start, so that only its partitions are read.
UPDATE webhook_worker.webhook_deliveries SET status = 'pending', updated_at = now()
WHERE delivery_id = ANY ($1::uuid[]) AND created_at >= $2::timestamptz
