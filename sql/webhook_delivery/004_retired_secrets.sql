-- Secret rotation with an overlap: a client's previous webhook secrets, kept for a while after
-- the web app changes "OAuthClient"."webhookSecret", so that receivers still verifying with the
-- old one keep working until their owners deploy the new one.

-- One row per retired secret. Filled by the optional trigger in sql/optional/ or by
-- `webhook-worker secrets retire`; read by the worker, which signs with every secret retired
-- less than --secret-overlap ago (WEBHOOK_SECRET_OVERLAP) as well as the current one; deleted by
-- `webhook-worker prune` once older than that. It holds secrets: grant it like "OAuthClient".
CREATE TABLE webhook_worker.retired_secrets (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    oauth_client_id  text        NOT NULL,
    secret           text        NOT NULL,
    retired_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_worker.retired_secrets IS
    'Previous webhook secrets of OAuth clients, still signed with during the overlap. Contains secrets.';
CREATE INDEX retired_secrets_client_idx ON webhook_worker.retired_secrets (oauth_client_id, retired_at DESC);
