-- Each agent's latest run and success from the runs whose ids ?1 (a JSON array) lists, merged
-- into its stored row: postgres/latest.sql in SQLite (the summary rules, docs/architecture.md;
-- written once: the write and summaries/recount.rs both use it); the same window as
-- daily_summaries.sql, over all days.
insert into agents as a (agent_name, last_run_at, last_status, last_success_at)
select agent_name, max(started_at), max(latest_status),
       max(case when status = 'success' then started_at end)
from (select agent_name, status, started_at,
             first_value(status) over (partition by agent_name
                                       order by started_at desc, id desc) as latest_status
      from agent_runs
      where id in (select value from json_each(?1)))
where true
group by agent_name
order by agent_name
on conflict (agent_name) do update set
    last_status     = case when excluded.last_run_at >= a.last_run_at
                           then excluded.last_status else a.last_status end,
    last_run_at     = max(a.last_run_at, excluded.last_run_at),
    last_success_at = max(coalesce(a.last_success_at, excluded.last_success_at),
                          coalesce(excluded.last_success_at, a.last_success_at)),
    updated_at      = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
