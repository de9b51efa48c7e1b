-- Traces: the program that enqueues a job may store the W3C trace context of the request that
-- enqueued it, and each attempt's span continues that trace. The value is a traceparent
-- (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), optionally followed by a space and a
-- tracestate. It is not checked here: an insert must never fail for its tracing; the worker
-- ignores a malformed value (a debug log) and the job runs as any other.
ALTER TABLE {{schema}}.jobs ADD COLUMN trace_context text;

COMMENT ON COLUMN {{schema}}.jobs.trace_context IS
    'Optional W3C traceparent (then a space and a tracestate, if any) of the request that enqueued the job; '
    'its attempts'' spans continue that trace. Handlers copy it to the jobs they enqueue.';

-- enqueue() gains trace_context as its last parameter; calls without it are unchanged.
DROP FUNCTION {{schema}}.enqueue(text, jsonb, timestamptz, integer, integer, text, text);
CREATE FUNCTION {{schema}}.enqueue(
    kind text,
    payload jsonb DEFAULT '{}'::jsonb,
    run_at timestamptz DEFAULT now(),
    priority integer DEFAULT 0,
    max_attempts integer DEFAULT NULL,
    unique_key text DEFAULT NULL,
    concurrency_key text DEFAULT NULL,
    trace_context text DEFAULT NULL
) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO {{schema}}.jobs
        (kind, payload, run_at, priority, max_attempts, unique_key, concurrency_key, trace_context)
    VALUES (enqueue.kind, enqueue.payload, enqueue.run_at, enqueue.priority::smallint, enqueue.max_attempts,
            enqueue.unique_key, enqueue.concurrency_key, enqueue.trace_context)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id;
$$;
