import Foundation
import LibPQ

/// Who receives an `integration.connected` event for a user, read from the web app's tables.
///
/// A client qualifies when its `"allowedScopes"` has the exact token `integration` (split on
/// commas, trimmed of spaces, tabs and line breaks, case-sensitive), it is active with a
/// non-empty `"webhookUrl"`, and the user has an active, unrevoked `"OAuthIntegrationGrant"` for
/// it. Tables are named without a schema so that the connection's `search_path` decides where the
/// web app's tables live.
enum Recipients {
    /// Each condition once, shared by the fan-out's selection and the re-check before each attempt.
    static let trimmedURL = #"btrim(c."webhookUrl", E' \t\n\r')"#
    static let hasScope =
        #"'integration' = ANY (SELECT btrim(scope, E' \t\n\r') "#
        + #"FROM unnest(string_to_array(c."allowedScopes", ',')) AS scope)"#
    static func hasGrant(client: String, user: String) -> String {
        """
        EXISTS (
            SELECT 1 FROM "OAuthIntegrationGrant" g
            WHERE g."clientId" = \(client) AND g."userId" = \(user) AND g."isActive" AND g."revokedAt" IS NULL
        )
        """
    }

    /// Whether client `c` receives the events of the user in parameter `user` (`"$1"`, `"$5"`...).
    static func eligibility(user: String) -> String {
        """
        c."isActive"
        AND coalesce(\(trimmedURL), '') <> ''
        AND \(hasScope)
        AND \(hasGrant(client: "c.id", user: user))
        """
    }

    /// For each delivery of `$1` (an array), its client's current eligibility, with the reason
    /// when it no longer is, its endpoint's circuit (no row: never failed) and the seconds left of
    /// its pause (`Retry-After`; negative or NULL: not paused) and its rate limit (NULL: none),
    /// and its secrets
    /// retired less than `$2` ago (a JSON array, newest first), which sign alongside the current
    /// one. `$3` bounds their `created_at` (``DeliveryID/since(_:)``). Read through
    /// ``GatheredReads``, many deliveries at a time (``readRechecks(overlap:database:)``).
    static let recheck = PQQuery(
        "recheckDeliveries",
        """
        SELECT d.delivery_id, d.event, d.status, d.payload, d.oauth_client_id, d.attempts,
               c.id IS NOT NULL AS client_exists,
               coalesce(c."isActive", false) AS client_active,
               \(trimmedURL) AS url,
               c."webhookSecret" AS secret,
               coalesce(\(hasScope), false) AS has_scope,
               \(hasGrant(client: "d.oauth_client_id", user: "d.user_id")) AS has_grant,
               e.state AS endpoint_state, e.consecutive_failures AS endpoint_failures,
               extract(epoch FROM e.paused_until - clock_timestamp())::float8 AS endpoint_paused_for,
               e.rate_limit AS endpoint_rate_limit,
               (SELECT array_to_json(array_agg(r.secret ORDER BY r.retired_at DESC))::text
                FROM webhook_worker.retired_secrets r
                WHERE r.oauth_client_id = d.oauth_client_id AND r.retired_at > now() - $2::interval
                  AND r.secret <> '' AND r.secret IS DISTINCT FROM c."webhookSecret"
                  -- No current secret means the app turned signing off: retired secrets sign nothing.
                  AND c."webhookSecret" <> '') AS retired_secrets
        FROM webhook_worker.webhook_deliveries d
        LEFT JOIN "OAuthClient" c ON c.id = d.oauth_client_id
        LEFT JOIN webhook_worker.endpoints e ON e.key = 'client:' || d.oauth_client_id
        WHERE d.delivery_id = ANY ($1::uuid[]) AND \(DeliveryID.window("d.created_at", 3))
        """)

    /// Reads the re-check rows of many deliveries in one statement, for ``GatheredReads``.
    /// - Parameter overlap: how long retired secrets still sign (`$2` of ``recheck``).
    static func readRechecks(overlap: Duration, database: PQConnectionPool) -> GatheredReads<UUID>.Read {
        { ids in
            let result = try await database.query(
                Self.recheck, [PQArray(ids), PQInterval(overlap), DeliveryID.since(ids)])
            var byID: [UUID: PQRow] = [:]
            for row in result.rows { byID[try row.decode("delivery_id", as: UUID.self)] = row }
            return byID
        }
    }
}
