-- Operational events posted to the web app (run --operational-url): each event of endpoint_events
-- is also POSTed, signed, by one replica, with retries. These columns are that relay's outbox.
-- Events recorded before this migration count as posted (they are old news); so do events
-- recorded while no replica has a URL set, once they are older than the relay's window.

ALTER TABLE webhook_worker.endpoint_events
    ADD COLUMN posted_at timestamptz,
    ADD COLUMN post_attempts integer NOT NULL DEFAULT 0,
    -- Not before: a relay that took the event holds it until then (a lease as long as a request);
    -- after a failed POST, when to try again.
    ADD COLUMN post_after timestamptz,
    ADD COLUMN post_error text;

UPDATE webhook_worker.endpoint_events SET posted_at = created_at;

-- What a relay looks for: events not yet posted, oldest first.
CREATE INDEX endpoint_events_unposted_idx ON webhook_worker.endpoint_events (id) WHERE posted_at IS NULL;

COMMENT ON COLUMN webhook_worker.endpoint_events.posted_at IS 'When a replica POSTed the event to --operational-url and got a 2xx; NULL while not (yet) posted.';
COMMENT ON COLUMN webhook_worker.endpoint_events.post_attempts IS 'POSTs of the event to --operational-url begun so far.';
COMMENT ON COLUMN webhook_worker.endpoint_events.post_after IS 'The next POST not before: the lease of the relay that holds it, or the wait after a failed POST.';
COMMENT ON COLUMN webhook_worker.endpoint_events.post_error IS 'Why the last POST to --operational-url failed.';
