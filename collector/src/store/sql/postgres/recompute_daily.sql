-- One agent's daily summary for one UTC day ($1 agent_name, $2 day), computed again from its
-- finished runs and written over the stored one (none left: the row is deleted). The rare
-- paths use it, where a run already counted changes: a run closed as overdue, then completed
-- by its late result (store/write/overdue.rs). The hot path adds to summaries instead
-- (store_batch.sql); both follow the same rules (store/write/mod.rs).
with day_runs as (
    select id, status, duration_ms, started_at
    from agent_runs
    where agent_name = $1
      and started_at >= ($2::date)::timestamp at time zone 'UTC'
      and started_at < ($2::date + 1)::timestamp at time zone 'UTC'
      and status <> 'running'
),
emptied as (
    delete from agent_daily_summaries
    where agent_name = $1 and day = $2::date and not exists (select 1 from day_runs)
)
insert into agent_daily_summaries as s
    (agent_name, day, run_count, success_count, failure_count, total_duration_ms,
     min_duration_ms, max_duration_ms, last_run_at, last_status, last_success_at)
select $1, $2::date,
       count(*),
       count(*) filter (where status = 'success'),
       count(*) filter (where status = 'failed'),
       coalesce(sum(duration_ms), 0),
       min(duration_ms),
       max(duration_ms),
       max(started_at),
       (array_agg(status order by started_at desc, id desc))[1],
       max(started_at) filter (where status = 'success')
from day_runs
having count(*) > 0
on conflict (agent_name, day) do update set
    run_count         = excluded.run_count,
    success_count     = excluded.success_count,
    failure_count     = excluded.failure_count,
    total_duration_ms = excluded.total_duration_ms,
    min_duration_ms   = excluded.min_duration_ms,
    max_duration_ms   = excluded.max_duration_ms,
    last_run_at       = excluded.last_run_at,
    last_status       = excluded.last_status,
    last_success_at   = excluded.last_success_at,
    updated_at        = now()
