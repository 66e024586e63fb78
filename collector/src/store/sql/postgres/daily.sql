-- The summary rules per day (docs/architecture.md), written once: the runs of `new_runs` and the
-- metric values of `new_metrics` (CTEs of the statement this is part of) aggregated per agent
-- and UTC day, and merged into the stored rows of their keys: counts and sums add up, extremes
-- are kept, the latest wins. The write adds the runs it inserts; the paths that change a run
-- already counted delete the day's row first and give it the day's runs (summaries/recount.rs).
-- Rows are upserted in key order, so concurrent batches cannot deadlock on them.
daily as (
    insert into agent_daily_summaries as s
        (agent_name, day, run_count, success_count, failure_count, total_duration_ms,
         min_duration_ms, max_duration_ms, last_run_at, last_status, last_success_at)
    select agent_name,
           (started_at at time zone 'UTC')::date,
           count(*),
           count(*) filter (where status = 'success'),
           count(*) filter (where status = 'failed'),
           coalesce(sum(duration_ms), 0),
           min(duration_ms),
           max(duration_ms),
           max(started_at),
           (array_agg(status order by started_at desc, id desc))[1],
           max(started_at) filter (where status = 'success')
    from new_runs
    group by 1, 2
    order by 1, 2
    on conflict (agent_name, day) do update set
        run_count         = s.run_count + excluded.run_count,
        success_count     = s.success_count + excluded.success_count,
        failure_count     = s.failure_count + excluded.failure_count,
        total_duration_ms = s.total_duration_ms + excluded.total_duration_ms,
        min_duration_ms   = least(s.min_duration_ms, excluded.min_duration_ms),
        max_duration_ms   = greatest(s.max_duration_ms, excluded.max_duration_ms),
        last_status       = case when excluded.last_run_at >= s.last_run_at
                                 then excluded.last_status else s.last_status end,
        last_run_at       = greatest(s.last_run_at, excluded.last_run_at),
        last_success_at   = greatest(s.last_success_at, excluded.last_success_at),
        updated_at        = now()
),
metric_daily as (
    insert into agent_metric_daily_summaries as s
        (agent_name, metric_name, day, value_count, value_sum, value_min, value_max,
         last_value, last_recorded_at)
    select agent_name,
           metric_name,
           (recorded_at at time zone 'UTC')::date,
           count(*),
           sum(metric_value),
           min(metric_value),
           max(metric_value),
           (array_agg(metric_value order by recorded_at desc, id desc))[1],
           max(recorded_at)
    from new_metrics
    where metric_value is not null
    group by 1, 2, 3
    order by 1, 2, 3
    on conflict (agent_name, metric_name, day) do update set
        value_count      = s.value_count + excluded.value_count,
        value_sum        = s.value_sum + excluded.value_sum,
        value_min        = least(s.value_min, excluded.value_min),
        value_max        = greatest(s.value_max, excluded.value_max),
        last_value       = case when excluded.last_recorded_at >= s.last_recorded_at
                                then excluded.last_value else s.last_value end,
        last_recorded_at = greatest(s.last_recorded_at, excluded.last_recorded_at),
        updated_at       = now()
)
