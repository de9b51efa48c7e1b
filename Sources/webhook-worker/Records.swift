import Foundation
import JobQueue
import LibPQ
import WebhookDelivery

// How the operator commands print the domain's records: under the column names of the tables
// and views they come from, which are what `--json` has always printed.

extension DeadLetter {
    var fields: Fields {
        [
            "id": id, "job_id": jobID, "kind": kind, "reason": reason, "attempts": attempts,
            "max_attempts": maxAttempts,
            "last_error": lastError, "payload": payload, "created_at": createdAt, "dead_at": deadAt,
            "requeued_at": requeuedAt, "requeued_job_id": requeuedJobID, "delivery_id": deliveryID,
        ]
    }

    /// The `delivery_id` of a `webhook.deliver` payload, as SQL's `payload ->> 'delivery_id'` reads it.
    var deliveryID: String? {
        guard let object = Output.document(payload) as? [String: Any], let value = object["delivery_id"],
            !(value is NSNull)
        else { return nil }
        if let text = value as? String { return text }
        let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys])
        return data.map { String(decoding: $0, as: UTF8.self) }
    }
}

extension JobAttemptRecord {
    var fields: Fields {
        [
            "attempt": attempt, "outcome": outcome, "worker_id": workerID, "started_at": startedAt,
            "finished_at": finishedAt, "error": error,
        ]
    }
}

extension Delivery {
    var fields: Fields {
        var fields: Fields = [
            "delivery_id": deliveryID, "event": event, "status": status, "attempts": attempts,
            "last_http_status": lastHTTPStatus, "last_error": lastError, "oauth_client_id": oauthClientID,
            "integration_account_id": integrationAccountID, "user_id": userID, "source_job_id": sourceJobID,
            "created_at": createdAt, "updated_at": updatedAt, "delivered_at": deliveredAt,
        ]
        if let payload { fields["payload"] = payload }
        return fields
    }
}

extension DeliveryAttemptRecord {
    var fields: Fields {
        [
            "attempt": attempt, "attempted_at": attemptedAt, "url": url, "http_status": httpStatus,
            "error_class": errorClass, "error": error, "duration_ms": durationMilliseconds,
            "response_excerpt": responseExcerpt, "worker_id": workerID, "job_id": jobID,
        ]
    }
}

extension EndpointHealth {
    var fields: Fields {
        [
            "key": key, "oauth_client_id": oauthClientID, "client_name": clientName, "client_public_id": clientPublicID,
            "state": state, "consecutive_failures": consecutiveFailures, "failing_since": failingSince, "trips": trips,
            "next_probe_at": nextProbeAt, "disabled_at": disabledAt, "disabled_by": disabledBy, "last_error": lastError,
            "last_failure_at": lastFailureAt, "last_success_at": lastSuccessAt, "failures": failures,
            "recoveries": recoveries, "pending_deliveries": pendingDeliveries, "success_rate_24h": successRate24h,
            "ordering": ordering,
            "max_in_flight": maxInFlight, "rate_limit": rateLimit, "limits_set_by": limitsSetBy,
            "limit": load.limit, "in_flight": load.inFlight, "waiting": load.waiting,
            "throttled_seconds": load.throttledSeconds, "paused_until": load.pausedUntil,
        ]
    }
}

extension Endpoints.NotClosed {
    var fields: Fields {
        [
            "oauth_client_id": oauthClientID, "state": state, "consecutive_failures": consecutiveFailures,
            "next_probe_at": nextProbeAt, "last_error": lastError,
        ]
    }
}

extension QueueStatistics.Depth {
    var fields: Fields { ["kind": kind, "state": state, "jobs": jobs, "oldest_age_seconds": oldestAgeSeconds] }
}

extension QueueStatistics.Waiting {
    var fields: Fields { ["kind": kind, "waiting": waiting, "oldest_wait_seconds": oldestWaitSeconds] }
}

extension QueueStatistics.Replica {
    var fields: Fields { ["worker_id": workerID, "running": running, "next_lease_expiry": nextLeaseExpiry] }
}

extension QueueStatistics.Throughput {
    var fields: Fields {
        [
            "kind": kind, "succeeded_1m": succeededLastMinute, "failed_1m": failedLastMinute,
            "succeeded_1h": succeededLastHour, "failed_1h": failedLastHour,
        ]
    }
}

extension QueueStatistics.DeadLetterCount {
    var fields: Fields { ["kind": kind, "reason": reason, "dead_letters": deadLetters, "last_dead_at": lastDeadAt] }
}

extension PausedKinds.Pause {
    var fields: Fields { ["kind": kind, "paused_at": pausedAt, "paused_by": pausedBy] }
}
