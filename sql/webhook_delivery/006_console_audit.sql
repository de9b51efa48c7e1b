-- What operators did through the web console (`webhook-worker console`, `run --console`): one
-- row per action, whether it succeeded or was refused. Written by AuditLog (Sources/WebhookDelivery),
-- read by the console's Audit page and by DBAs. No secret is ever stored here: actor is the
-- name of the console token used, never the token.
CREATE TABLE webhook_worker.console_audit (
    id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    -- The token's name (`name:secret` in WORKER_CONSOLE_TOKEN; `operator` for a bare secret),
    -- or `local` when the console runs on loopback without a token.
    actor    text        NOT NULL,
    -- e.g. delivery.resend, delivery.cancel, endpoint.disable, dead_letter.retry, kind.pause
    action   text        NOT NULL,
    -- What it acted on, e.g. delivery:<uuid>, endpoint:client:<id>, dead_letter:<id>, kind:<kind>
    target   text        NOT NULL,
    detail   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- ok, refused (read-only, a missing or wrong CSRF token) or failed: <why>
    outcome  text        NOT NULL
);
COMMENT ON TABLE webhook_worker.console_audit IS
    'Actions taken through the web console: who (token name), what, on what, and how it ended.';
CREATE INDEX console_audit_at_idx ON webhook_worker.console_audit (at);
