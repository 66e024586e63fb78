-- postgres/recompute_daily.sql in SQLite (?1 agent_name, ?2 day 'YYYY-MM-DD'): the day's
-- summary computed again from the agent's finished runs, written over the stored one. An
-- emptied day is deleted by the statement before it (store/write/overdue.rs).
insert into agent_daily_summaries as s
    (agent_name, day, run_count, success_count, failure_count, total_duration_ms,
     min_duration_ms, max_duration_ms, last_run_at, last_status, last_success_at)
select ?1, ?2, count(*), sum(status = 'success'), sum(status = 'failed'),
       coalesce(sum(duration_ms), 0), min(duration_ms), max(duration_ms), max(started_at),
       max(latest_status), max(case when status = 'success' then started_at end)
from (select status, duration_ms, started_at,
             first_value(status) over (order by started_at desc, id desc) as latest_status
      from agent_runs
      where agent_name = ?1 and date(started_at) = ?2 and status <> 'running')
where true
group by 1, 2
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
    updated_at        = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
