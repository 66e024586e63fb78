-- PostgreSQL's own rate for the collector's work, one report per transaction (pgbench -M prepared):
-- the run, its 10 metrics (8 numbers, 2 strings) and both daily-summary upserts computed from the
-- report's own values, as collector/src/store/ingest.rs does for a batch. Keep the two in step.
-- Run it with -M prepared: the variables travel as parameters, not as quoted text.
\set agent random(0, 19)
BEGIN;
INSERT INTO agent_runs (run_key, agent_name, started_at, finished_at, status, error_message,
                        duration_ms, trigger, scheduled_for, host, metric_count)
VALUES (gen_random_uuid(), 'bench_agent_' || lpad(:agent::text, 2, '0'),
        now() - interval '1500 ms', now(), 'success', NULL, 1500, 'api', NULL, NULL, 10)
ON CONFLICT (run_key) DO NOTHING
RETURNING id AS run_id, agent_name, finished_at \gset
INSERT INTO agent_metrics (run_id, agent_name, metric_name, metric_value, metric_text, recorded_at)
VALUES (:run_id, :agent_name, 'items_processed', '42', NULL, :finished_at::timestamptz),
       (:run_id, :agent_name, 'errors', '0', NULL, :finished_at::timestamptz),
       (:run_id, :agent_name, 'duration_ms', '1500', NULL, :finished_at::timestamptz),
       (:run_id, :agent_name, 'tokens_in', '1234', NULL, :finished_at::timestamptz),
       (:run_id, :agent_name, 'tokens_out', '567', NULL, :finished_at::timestamptz),
       (:run_id, :agent_name, 'cost_usd', '0.0123', NULL, :finished_at::timestamptz),
       (:run_id, :agent_name, 'retries', '1', NULL, :finished_at::timestamptz),
       (:run_id, :agent_name, 'score', '0.87', NULL, :finished_at::timestamptz),
       (:run_id, :agent_name, 'status', NULL, 'ok', :finished_at::timestamptz),
       (:run_id, :agent_name, 'model', NULL, 'llama-3.1-8b', :finished_at::timestamptz);
INSERT INTO agent_daily_summaries AS s
    (agent_name, day, run_count, success_count, failure_count, total_duration_ms,
     min_duration_ms, max_duration_ms, last_run_at, last_status, last_success_at)
VALUES (:agent_name, (now() AT TIME ZONE 'UTC')::date, 1, 1, 0, 1500, 1500, 1500,
        now() - interval '1500 ms', 'success', now() - interval '1500 ms')
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
SELECT :agent_name, name, (now() AT TIME ZONE 'UTC')::date, 1, value, value, value, value,
       :finished_at::timestamptz
FROM (VALUES ('cost_usd', 0.0123), ('duration_ms', 1500), ('errors', 0), ('items_processed', 42),
             ('retries', 1), ('score', 0.87), ('tokens_in', 1234), ('tokens_out', 567))
     AS m (name, value)
ORDER BY 1, 2
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
