-- Console sessions signed out before they expired. A session cookie is signed, not stored, so it
-- stays valid until its expiry wherever the same token is configured (every replica, and after a
-- restart); signing out records its nonce here, and every console refuses a cookie whose nonce is
-- listed. Written and read by ConsoleSignOuts (Sources/webhook-worker/Console); a row is useless
-- once its session has expired, and the next sign-out deletes such rows.
CREATE TABLE webhook_worker.console_sign_outs (
    -- The session's random nonce, as in its cookie: not enough to forge the cookie or its CSRF
    -- token (both need the token's secret).
    nonce       text        PRIMARY KEY,
    -- The console token's name, as in console_audit.
    actor       text        NOT NULL,
    signed_out  timestamptz NOT NULL DEFAULT now(),
    -- When the session would have expired anyway: the row may go after it.
    expires_at  timestamptz NOT NULL
);
COMMENT ON TABLE webhook_worker.console_sign_outs IS
    'Web console sessions signed out before their expiry: their cookies are refused until then.';
CREATE INDEX console_sign_outs_expires_at_idx ON webhook_worker.console_sign_outs (expires_at);
