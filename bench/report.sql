-- PostgreSQL's own rate for the collector's work, one report per transaction (pgbench -M prepared):
-- the run, its 10 metrics (8 numbers, 2 strings) and both daily-summary upserts, written as
-- collector/src/store/ingest.rs writes them. Keep the two in step.
\set agent random(0, 19)
BEGIN;
INSERT INTO agent_runs (run_key, agent_name, started_at, finished_at, status, error_message,
                        duration_ms, trigger, scheduled_for, host, metric_count)
VALUES (gen_random_uuid(), 'bench_agent_' || lpad(:agent::text, 2, '0'),
        now() - interval '1500 ms', now(), 'success', NULL, 1500, 'api', NULL, NULL, 10)
ON CONFLICT (run_key) DO NOTHING
RETURNING id AS run_id \gset
INSERT INTO agent_metrics (run_id, agent_name, metric_name, metric_value, metric_text, recorded_at)
SELECT :run_id, agent_name, m.name, m.value::numeric, m.text, finished_at
FROM agent_runs,
     (VALUES ('items_processed', '42', NULL), ('errors', '0', NULL), ('duration_ms', '1500', NULL),
             ('tokens_in', '1234', NULL), ('tokens_out', '567', NULL), ('cost_usd', '0.0123', NULL),
             ('retries', '1', NULL), ('score', '0.87', NULL), ('status', NULL, 'ok'),
             ('model', NULL, 'llama-3.1-8b')) AS m (name, value, text)
WHERE id = :run_id;
INSERT INTO agent_daily_summaries AS s
    (agent_name, day, run_count, success_count, failure_count, total_duration_ms,
     min_duration_ms, max_duration_ms, last_run_at, last_status, last_success_at)
SELECT agent_name, (started_at AT TIME ZONE 'UTC')::date, count(*),
       count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE status = 'failed'),
       coalesce(sum(duration_ms), 0), min(duration_ms), max(duration_ms), max(started_at),
       (array_agg(status ORDER BY started_at DESC, id DESC))[1],
       max(started_at) FILTER (WHERE status = 'success')
FROM agent_runs WHERE id = ANY (ARRAY[:run_id]::bigint[])
GROUP BY 1, 2 ORDER BY 1, 2
ON CONFLICT (agent_name, day) DO UPDATE SET
    run_count = s.run_count + excluded.run_count,
    success_count = s.success_count + excluded.success_count,
    failure_count = s.failure_count + excluded.failure_count,
    total_duration_ms = s.total_duration_ms + excluded.total_duration_ms,
    min_duration_ms = least(s.min_duration_ms, excluded.min_duration_ms),
    max_duration_ms = greatest(s.max_duration_ms, excluded.max_duration_ms),
    last_status = CASE WHEN excluded.last_run_at >= s.last_run_at
                       THEN excluded.last_status ELSE s.last_status END,
    last_run_at = greatest(s.last_run_at, excluded.last_run_at),
    last_success_at = greatest(s.last_success_at, excluded.last_success_at),
    updated_at = now();
INSERT INTO agent_metric_daily_summaries AS s
    (agent_name, metric_name, day, value_count, value_sum, value_min, value_max,
     last_value, last_recorded_at)
SELECT agent_name, metric_name, (recorded_at AT TIME ZONE 'UTC')::date, count(*),
       sum(metric_value), min(metric_value), max(metric_value),
       (array_agg(metric_value ORDER BY recorded_at DESC, id DESC))[1], max(recorded_at)
FROM agent_metrics WHERE run_id = ANY (ARRAY[:run_id]::bigint[]) AND metric_value IS NOT NULL
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (agent_name, metric_name, day) DO UPDATE SET
    value_count = s.value_count + excluded.value_count,
    value_sum = s.value_sum + excluded.value_sum,
    value_min = least(s.value_min, excluded.value_min),
    value_max = greatest(s.value_max, excluded.value_max),
    last_value = CASE WHEN excluded.last_recorded_at >= s.last_recorded_at
                      THEN excluded.last_value ELSE s.last_value END,
    last_recorded_at = greatest(s.last_recorded_at, excluded.last_recorded_at),
    updated_at = now();
END;
