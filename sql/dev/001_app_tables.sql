-- The web app's tables, as its Prisma schema creates them (quoted identifiers), reduced to the
-- columns the worker reads plus a few it ignores. For development, the demo and tests only:
-- production runs the web app's own migrations, never this file. Safe to run twice.

CREATE TABLE IF NOT EXISTS "User" (
    id          text PRIMARY KEY,
    email       text UNIQUE,
    name        text,
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS "IntegrationDefinitionV2" (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    slug        text NOT NULL,
    icon        text NOT NULL,
    "createdAt" timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS "IntegrationAccount" (
    id                        text PRIMARY KEY,
    "accountId"               text,
    "integrationDefinitionId" text NOT NULL REFERENCES "IntegrationDefinitionV2"(id),
    "integratedById"          text NOT NULL REFERENCES "User"(id),
    "isActive"                boolean NOT NULL DEFAULT true,
    deleted                   timestamp(3),
    "createdAt"               timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS "OAuthClient" (
    id              text PRIMARY KEY,
    "clientId"      text NOT NULL UNIQUE,
    "clientSecret"  text,
    name            text NOT NULL,
    "allowedScopes" text NOT NULL DEFAULT 'profile,email,openid',
    "webhookUrl"    text,
    "webhookSecret" text,
    "isActive"      boolean NOT NULL DEFAULT true,
    "createdAt"     timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS "OAuthIntegrationGrant" (
    id                     text PRIMARY KEY,
    "clientId"             text NOT NULL REFERENCES "OAuthClient"(id),
    "userId"               text NOT NULL REFERENCES "User"(id),
    "integrationAccountId" text,
    "isActive"             boolean NOT NULL DEFAULT true,
    "revokedAt"            timestamp(3),
    "createdAt"            timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS "OAuthIntegrationGrant_userId_idx" ON "OAuthIntegrationGrant" ("userId");
-- The worker reads a grant by client and user on every attempt (docs/database.md).
CREATE INDEX IF NOT EXISTS "OAuthIntegrationGrant_clientId_userId_idx"
    ON "OAuthIntegrationGrant" ("clientId", "userId");
