"""The issue's targets beside the figures they judge."""


from .settings import ISOLATION_LIMIT, ISOLATION_TARGET_MAX_MS, ISOLATION_TARGET_P50_MS


def targets(res):
    """The issues' targets (issue 11's; issue 22's per endpoint) beside the figures they judge:
    {key: {measure, value, target, verdict}}.
    A missed target is reported, not a problem (the exit status does not change), except the
    isolation phase's, which that phase counts as problems itself."""

    def get(key, *path):
        value = res.get(key)
        for p in path:
            value = value.get(p) if isinstance(value, dict) else None
        return value

    backlog_ratio = get("backlog", "over_burn_down_1_worker")
    checks = [
        ("deliveries_per_second", "deliveries/s, default settings, one replica",
         get("delivery", "deliveries_per_second"),
         "≥ 5,000 (floor 3,000)", lambda v: v >= 5000, lambda v: v >= 3000),
        ("noop_drain", "no-op drain, default settings, one replica (jobs/s)",
         get("burn_down_1_worker", "jobs_per_second"), "≥ 20,000", lambda v: v >= 20000, None),
        ("pickup_p99_under_load", "pick-up p99 while 1,000 deliveries/s flow (ms)",
         get("latency_under_load", "pickup_ms", "p99"), "≤ 10", lambda v: v <= 10, None),
        ("pickup_p99_idle", "pick-up p99, idle (ms)", get("pickup_latency", "pickup_ms", "p99"), "≤ 5",
         lambda v: v <= 5, None),
        ("backlog_rate", "no-op drain with the large backlog / small-backlog rate", backlog_ratio, "≥ 0.80",
         lambda v: v >= 0.8, None),
        ("backlog_steady", "large backlog: slowest tenth / its overall rate",
         get("backlog", "slowest_tenth_over_overall"), "≥ 0.80", lambda v: v >= 0.8, None),
        ("delivery_peak_rss", "peak RSS during the delivery phase (MiB)", get("delivery", "peak_rss_mib"), "< 64",
         lambda v: v < 64, None),
        ("db_ms_per_delivery", "database time per delivery (ms, pg_stat_statements)",
         get("delivery", "database_time", "ms_per_delivery"), "≤ 0.15 (issue 22: ≤ 0.2)", lambda v: v <= 0.15,
         lambda v: v <= 0.2),
        ("isolation_p50", "isolation: healthy insert -> POST p50 (ms)",
         get("isolation", "healthy_insert_to_post_ms", "p50"), f"< {ISOLATION_TARGET_P50_MS}",
         lambda v: v < ISOLATION_TARGET_P50_MS, None),
        ("isolation_max", "isolation: healthy insert -> POST max (ms)",
         get("isolation", "healthy_insert_to_post_ms", "max"), f"< {ISOLATION_TARGET_MAX_MS:,}",
         lambda v: v < ISOLATION_TARGET_MAX_MS, None),
        ("isolation_in_flight", "isolation: the hanging endpoint's requests in flight, peak",
         max((v for v in (get("isolation", "hanging_in_flight_peak", "receiver"),
                          get("isolation", "hanging_in_flight_peak", "database_sampled")) if v is not None),
             default=None), f"≤ {ISOLATION_LIMIT}", lambda v: v <= ISOLATION_LIMIT, None),
        # Issue 22's, per endpoint.
        ("one_endpoint", "deliveries/s to one endpoint (nginx, 204 at once)",
         get("one_endpoint", "deliveries_per_second"), "≥ 2,000", lambda v: v >= 2000, None),
        ("two_endpoints", "deliveries/s to 2 endpoints (nginx)",
         get("delivery_2_clients", "deliveries_per_second"), "≥ 3,000", lambda v: v >= 3000, None),
        ("slow_endpoint", "deliveries/s to one healthy endpoint answering in 200 ms",
         get("slow_endpoint", "deliveries_per_second"), "≥ 150", lambda v: v >= 150, None),
        ("slow_endpoint_in_flight", "requests in flight at that endpoint, peak",
         get("slow_endpoint", "in_flight_peak"), "≥ 32", lambda v: v >= 32, None),
        ("fairness_p50", "first delivery to a new endpoint while another has a backlog, p50 (ms)",
         get("fairness", "new_insert_to_receipt_ms", "p50"), "≤ 50", lambda v: v <= 50, None),
        # Sent inside: after the 429's answer had come back. Requests already on their way when it
        # was answered (the first ones, sent at once) are counted beside it, not judged.
        ("retry_after_inside", "requests sent inside a 429's Retry-After (after an answer came back)",
         get("retry_after", "requests_sent_inside_window"), "0", lambda v: v == 0, None),
    ]
    checks += [
        ("history_drop_seconds", "removing a day of attempts by dropping its partition (s)",
         get("history", "drop", "seconds"), "≤ 1", lambda v: v <= 1, None),
        ("history_drop_wal", "WAL of the drop, % of DELETE's", get("history", "drop_wal_percent_of_delete"), "≤ 1",
         lambda v: v <= 1, None),
        ("history_search_p95", "console search by client over 30 days, p95 (ms)",
         get("history", "search", "p95_ms"), "≤ 100", lambda v: v <= 100, None),
        ("history_load_rate", "deliveries/s with the history loaded / with none",
         get("history_load", "deliveries_per_second", "ratio"), "≥ 0.90", lambda v: v >= 0.9, None),
    ]
    targets = {}
    for key, measure, value, target, met, floor in checks:
        verdict = ("-" if value is None else "met" if met(value)
                   else "floor met" if floor and floor(value) else "MISSED")
        targets[key] = {"measure": measure, "value": value, "target": target, "verdict": verdict}
    return targets
