-- job_attempts becomes partitioned by finished_at (see 015): the old table is attached, without
-- a scan, as job_attempts_legacy, and the next days' partitions are created. Replicas of the
-- previous release go on writing through the same name.
SELECT {{schema}}.history_partition('{{schema}}.job_attempts');
SELECT count(*) FROM {{schema}}.create_history_partitions(interval '1 day', interval '3 days');
