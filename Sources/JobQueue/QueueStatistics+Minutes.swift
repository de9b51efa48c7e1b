import Foundation
import LibPQ

extension QueueStatistics {
    /// Attempts finished in one minute.
    public struct Minute: Sendable, Equatable {
        /// The minute's start.
        public let start: Date
        public let succeeded: Int
        /// Every other outcome: failed, lost, released, cancelled.
        public let failed: Int
    }

    static func minutesQuery(_ schema: String) -> PQQuery {
        PQQuery(
            "\(schema).statsMinutes",
            """
            WITH minutes AS (
                SELECT generate_series(date_trunc('minute', now()) - make_interval(mins => $1 - 1),
                                       date_trunc('minute', now()), interval '1 minute') AS start
            ), counted AS (
                SELECT date_trunc('minute', finished_at) AS start,
                       count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
                       count(*) FILTER (WHERE outcome <> 'succeeded') AS failed
                FROM \(schema).job_attempts
                WHERE finished_at >= date_trunc('minute', now()) - make_interval(mins => $1 - 1)
                  AND ($2::text IS NULL OR kind = $2)
                GROUP BY 1
            )
            SELECT m.start, coalesce(c.succeeded, 0) AS succeeded, coalesce(c.failed, 0) AS failed
            FROM minutes m LEFT JOIN counted c USING (start) ORDER BY m.start
            """)
    }

    /// Attempts finished per minute over the last `minutes` minutes (this one included, oldest
    /// first, one entry per minute even when nothing finished), of `kind` when given.
    public static func throughputPerMinute(
        _ connection: PQConnection, schema: JobQueueSchema, minutes: Int = 60, kind: String? = nil
    ) async throws -> [Minute] {
        precondition(minutes > 0, "at least one minute")
        return try await connection.query(schema.statements.statsMinutes, [minutes, kind]).rows.map { row in
            Minute(
                start: try row.decode("start"), succeeded: try row.decode("succeeded"), failed: try row.decode("failed")
            )
        }
    }
}
