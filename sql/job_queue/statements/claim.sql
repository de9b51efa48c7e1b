-- The worker's statements about claims and leases (JobStore runs them). {{schema}} is the
-- queue's schema. Each `-- name:` line starts a statement, prepared as <schema>.<name>.

-- name: claimJobs
-- One claim, in one round trip: claim_jobs (migrations 003, 005, 008, 010, 018, 021 and 023; the text is in
-- ../schema.sql) takes up to $2 runnable jobs of the kinds in $1 that no operator paused, in
-- (priority, run_at, id) order, within the per-key limits ($5 kinds, $6 limits), leased to $3
-- for $4. Why it is built as it is (per-key heads, SKIP LOCKED on keys, running jobs counted in a
-- new snapshot) is in migration 003's comment. The function carries its own planner settings (no
-- sorts, bitmap or sequential scans, no JIT): a queue table's statistics are always stale, and
-- these keep its plans walking the claim indexes in order whatever the statistics say.
SELECT * FROM {{schema}}.claim_jobs(
    ARRAY(SELECT unnest($1::text[]) EXCEPT SELECT kind FROM {{schema}}.paused_kinds),
    $5::text[], $6::int[], $2, $3, $4::interval)

-- name: extendLeases
-- Rows are locked in id order and rows locked by someone else are skipped: the outcome writers
-- lock the same rows, and renewal must never wait for them or deadlock with them. A row skipped
-- now is renewed next time, long before its lease runs out.
UPDATE {{schema}}.jobs SET locked_until = now() + $3::interval
WHERE id IN (
    SELECT id FROM {{schema}}.jobs
    WHERE id = ANY($1::bigint[]) AND locked_by = $2
    ORDER BY id
    FOR UPDATE SKIP LOCKED)

-- name: leasesLost
-- Jobs among $1 that another replica than $2 holds now (the lease ran out and was taken back).
SELECT id FROM {{schema}}.jobs
WHERE id = ANY($1::bigint[]) AND locked_by IS DISTINCT FROM $2

-- name: reapExpiredLeases
-- Expired leases of any replica back to the queue ($1: the default max attempts, $2: a batch).
SELECT kind, jobs FROM {{schema}}.reap_expired_leases($1, $2)

-- name: repairConcurrencyKeys
-- Mends the key rows of the kinds $1 that cannot be right (migration 008), one replica at a time.
SELECT kind, concurrency_key, priority, was FROM {{schema}}.repair_concurrency_keys($1, $2, $3)
