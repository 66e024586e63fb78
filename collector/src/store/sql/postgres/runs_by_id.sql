-- Stored runs by id ($1), as the `new_runs` the summary rules (daily.sql, latest.sql) read, and
-- no metric values (`new_metrics` empty): the paths that count runs already stored, anew or
-- again (summaries/recount.rs).
new_runs as (
    select id, run_key, agent_name, started_at, finished_at, status, duration_ms
    from agent_runs
    where id = any($1::int8[])
),
new_metrics as (
    select id, run_id, agent_name, metric_name, metric_value, recorded_at
    from agent_metrics
    where false
)
