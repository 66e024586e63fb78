-- The daily summaries of the runs whose ids ?1 (a JSON array) lists, merged into the stored
-- ones: postgres/daily.sql's `daily` step in SQLite (the summary rules, docs/architecture.md;
-- written once: the write and summaries/recount.rs both use it).
-- first_value picks the status of each day's latest run; the `where true` lets SQLite parse
-- an upsert fed by a SELECT.
insert into agent_daily_summaries as s
    (agent_name, day, run_count, success_count, failure_count, total_duration_ms,
     min_duration_ms, max_duration_ms, last_run_at, last_status, last_success_at)
select agent_name, day, count(*), sum(status = 'success'), sum(status = 'failed'),
       coalesce(sum(duration_ms), 0), min(duration_ms), max(duration_ms), max(started_at),
       max(latest_status), max(case when status = 'success' then started_at end)
from (select agent_name, date(started_at) as day, status, duration_ms, started_at,
             first_value(status) over (partition by agent_name, date(started_at)
                                       order by started_at desc, id desc) as latest_status
      from agent_runs
      where id in (select value from json_each(?1)))
where true
group by agent_name, day
order by agent_name, day
on conflict (agent_name, day) do update set
    run_count         = s.run_count + excluded.run_count,
    success_count     = s.success_count + excluded.success_count,
    failure_count     = s.failure_count + excluded.failure_count,
    total_duration_ms = s.total_duration_ms + excluded.total_duration_ms,
    min_duration_ms   = min(coalesce(s.min_duration_ms, excluded.min_duration_ms),
                            coalesce(excluded.min_duration_ms, s.min_duration_ms)),
    max_duration_ms   = max(coalesce(s.max_duration_ms, excluded.max_duration_ms),
                            coalesce(excluded.max_duration_ms, s.max_duration_ms)),
    last_status       = case when excluded.last_run_at >= s.last_run_at
                             then excluded.last_status else s.last_status end,
    last_run_at       = max(s.last_run_at, excluded.last_run_at),
    last_success_at   = max(coalesce(s.last_success_at, excluded.last_success_at),
                            coalesce(excluded.last_success_at, s.last_success_at)),
    updated_at        = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
