-- The benchmarks' data: :runs runs over the last 90 days, spread over :agents agents, ten
-- metrics each, and both daily summaries and `agents` computed from them, as the collector
-- would have kept them. Loaded with the secondary indexes dropped, then rebuilt. Used by bench/dashboard.sh and
-- bench/console.sh: psql -v runs=N -v agents=M -f bench/generate.sql
SET maintenance_work_mem = '512MB';
-- The migration's secondary indexes, dropped for the load and rebuilt from their definitions.
CREATE TEMP TABLE saved_indexes AS
  SELECT indexname, indexdef FROM pg_indexes
  WHERE tablename IN ('agent_runs', 'agent_metrics') AND indexname NOT LIKE '%_pkey'
    AND indexname NOT LIKE '%run_key%';
DO $$ DECLARE i record; BEGIN
  FOR i IN SELECT indexname FROM saved_indexes LOOP EXECUTE format('DROP INDEX %I', i.indexname); END LOOP;
END $$;

-- One run every 90 days / :runs, newest now; :agents agents, one of them `hello`; about 2% failed.
INSERT INTO agent_runs (run_key, agent_name, started_at, finished_at, status, error_message,
                        duration_ms, trigger, host, metric_count, received_at)
SELECT gen_random_uuid(),
       CASE WHEN i % :agents = 0 THEN 'hello'
            ELSE 'agent_' || lpad((i % :agents)::text, length((:agents - 1)::text), '0') END,
       t, t + d * interval '1 ms',
       CASE WHEN i % 53 = 0 THEN 'failed' ELSE 'success' END,
       CASE WHEN i % 53 = 0 THEN 'timed out after 30s' END,
       d, 'schedule', 'bench', 10, t + d * interval '1 ms'
FROM generate_series(1, :runs) AS i,
     LATERAL (SELECT now() - (:runs - i) * (interval '90 days' / :runs) AS t,
                     500 + (i::bigint * 7919) % 5000 AS d) AS v;

-- Ten metrics per run: eight numbers (the first is `greeting_chars`) and two strings.
INSERT INTO agent_metrics (run_id, agent_name, metric_name, metric_value, metric_text, recorded_at)
SELECT r.id, r.agent_name,
       CASE g WHEN 1 THEN 'greeting_chars' WHEN 9 THEN 'status' WHEN 10 THEN 'model'
              ELSE 'metric_' || g END,
       CASE WHEN g <= 8 THEN ((r.id * g * 7919) % 100000) / 100.0 END,
       CASE g WHEN 9 THEN 'ok' WHEN 10 THEN 'llama-3.1-8b' END,
       r.finished_at
FROM agent_runs r, generate_series(1, 10) AS g;

DO $$ DECLARE i record; BEGIN
  FOR i IN SELECT indexdef FROM saved_indexes LOOP EXECUTE i.indexdef; END LOOP;
END $$;

INSERT INTO agent_daily_summaries
    (agent_name, day, run_count, success_count, failure_count, total_duration_ms,
     min_duration_ms, max_duration_ms, last_run_at, last_status, last_success_at)
SELECT agent_name, (started_at AT TIME ZONE 'UTC')::date, count(*),
       count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE status = 'failed'),
       sum(duration_ms), min(duration_ms), max(duration_ms), max(started_at),
       (array_agg(status ORDER BY started_at DESC))[1],
       max(started_at) FILTER (WHERE status = 'success')
FROM agent_runs GROUP BY 1, 2;

INSERT INTO agent_metric_daily_summaries
    (agent_name, metric_name, day, value_count, value_sum, value_min, value_max, last_value,
     last_recorded_at)
SELECT agent_name, metric_name, (recorded_at AT TIME ZONE 'UTC')::date, count(*),
       sum(metric_value), min(metric_value), max(metric_value),
       (array_agg(metric_value ORDER BY recorded_at DESC))[1], max(recorded_at)
FROM agent_metrics WHERE metric_value IS NOT NULL GROUP BY 1, 2, 3;

-- `agents` as migration 0006 fills it from existing summaries.
INSERT INTO agents (agent_name, last_run_at, last_status, last_success_at)
SELECT DISTINCT ON (agent_name) agent_name, last_run_at, last_status,
       max(last_success_at) OVER (PARTITION BY agent_name)
FROM agent_daily_summaries ORDER BY agent_name, day DESC;

VACUUM ANALYZE;
