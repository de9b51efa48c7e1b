import LibPQ

/// Who receives an `integration.connected` event for a user, read from the web app's tables.
///
/// A client qualifies when its `"allowedScopes"` has the exact token `integration` (split on
/// commas, trimmed of spaces, tabs and line breaks, case-sensitive), it is active with a non-empty `"webhookUrl"`, and the user
/// has an active, unrevoked `"OAuthIntegrationGrant"` for it. Tables are named without a schema
/// so that the connection's `search_path` decides where the web app's tables live.
enum Recipients {
    static let eligibility = """
        c."isActive"
        AND coalesce(btrim(c."webhookUrl", E' \t\n\r'), '') <> ''
        AND 'integration' = ANY (SELECT btrim(scope, E' \t\n\r') FROM unnest(string_to_array(c."allowedScopes", ',')) AS scope)
        AND EXISTS (
            SELECT 1 FROM "OAuthIntegrationGrant" g
            WHERE g."clientId" = c.id AND g."userId" = $1 AND g."isActive" AND g."revokedAt" IS NULL
        )
        """

    static let forUser = PostgresQuery(
        "recipientsForUser",
        """
        SELECT c.id FROM "OAuthClient" c
        WHERE \(eligibility)
        ORDER BY c.id
        """)

    /// The client's current eligibility for one delivery, with the reason when it no longer is.
    static let recheck = PostgresQuery(
        "recheckDelivery",
        """
        SELECT d.delivery_id, d.status, d.payload, d.oauth_client_id, d.attempts,
               c.id IS NOT NULL AS client_exists,
               coalesce(c."isActive", false) AS client_active,
               btrim(c."webhookUrl", E' \t\n\r') AS url,
               c."webhookSecret" AS secret,
               coalesce('integration' = ANY (SELECT btrim(scope, E' \t\n\r') FROM unnest(string_to_array(c."allowedScopes", ',')) AS scope), false) AS has_scope,
               EXISTS (
                   SELECT 1 FROM "OAuthIntegrationGrant" g
                   WHERE g."clientId" = d.oauth_client_id AND g."userId" = d.user_id AND g."isActive" AND g."revokedAt" IS NULL
               ) AS has_grant
        FROM webhook_worker.webhook_deliveries d
        LEFT JOIN "OAuthClient" c ON c.id = d.oauth_client_id
        WHERE d.delivery_id = $1
        """)
}
