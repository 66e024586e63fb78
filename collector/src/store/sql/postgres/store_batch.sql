-- The whole write of a batch in one statement (one round trip, atomic on its own): the runs
-- whose run_key is new or whose run is `running` (started by POST /runs, of the same agent:
-- the report completes it; running rows are in no summary yet, so it is counted now, once),
-- their metrics, both daily summaries and each agent's latest run computed from those rows,
-- never read back from the tables (the rules: store/write/mod.rs). The columns travel as
-- arrays, so the statement is prepared once per connection whatever the batch size. Summary
-- rows are upserted in key order, so concurrent batches cannot deadlock on them. Numbers
-- travel as text and are cast by PostgreSQL, so each decimal is stored exactly as sent.
-- Returns (run_key, id) of each run written (new or completed). bench/run.sh runs this file under pgbench.
with new_runs as (
    insert into agent_runs
        (run_key, agent_name, started_at, finished_at, status, error_message, duration_ms,
         trigger, scheduled_for, host, metric_count)
    select * from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                         $5::text[], $6::text[], $7::int8[], $8::text[], $9::timestamptz[],
                         $10::text[], $11::int4[])
    on conflict (run_key) do update set
        started_at    = excluded.started_at,
        finished_at   = excluded.finished_at,
        status        = excluded.status,
        error_message = excluded.error_message,
        duration_ms   = excluded.duration_ms,
        trigger       = excluded.trigger,
        scheduled_for = coalesce(excluded.scheduled_for, agent_runs.scheduled_for),
        host          = coalesce(excluded.host, agent_runs.host),
        metric_count  = excluded.metric_count,
        received_at   = now()
    where agent_runs.status = 'running' and agent_runs.agent_name = excluded.agent_name
    returning id, run_key, agent_name, started_at, finished_at, status, duration_ms
),
new_metrics as (
    insert into agent_metrics
        (run_id, agent_name, metric_name, metric_value, metric_text, recorded_at)
    select r.id, r.agent_name, m.metric_name, m.literal::numeric, m.text_value, r.finished_at
    from unnest($12::uuid[], $13::text[], $14::text[], $15::text[]) with ordinality
             as m (run_key, metric_name, literal, text_value, position)
    join new_runs r using (run_key)
    order by r.id, m.position
    returning id, run_id, agent_name, metric_name, metric_value, recorded_at
),
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
),
-- Each agent's latest run and success over all days (the `daily` rules without the day);
-- after the summaries, so every batch takes its row locks in the same order.
latest as (
    insert into agents as a (agent_name, last_run_at, last_status, last_success_at)
    select agent_name,
           max(started_at),
           (array_agg(status order by started_at desc, id desc))[1],
           max(started_at) filter (where status = 'success')
    from new_runs
    group by 1
    order by 1
    on conflict (agent_name) do update set
        last_status     = case when excluded.last_run_at >= a.last_run_at
                               then excluded.last_status else a.last_status end,
        last_run_at     = greatest(a.last_run_at, excluded.last_run_at),
        last_success_at = greatest(a.last_success_at, excluded.last_success_at),
        updated_at      = now()
)
select run_key, id from new_runs
