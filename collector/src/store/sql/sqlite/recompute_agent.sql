-- postgres/recompute_agent.sql in SQLite, after the row is deleted when the agent has no
-- summary left (RECOMPUTE_AGENT_GONE_SQLITE).
insert into agents as a (agent_name, last_run_at, last_status, last_success_at)
select agent_name, last_run_at, last_status,
       (select max(last_success_at) from agent_daily_summaries where agent_name = ?1)
from agent_daily_summaries
where agent_name = ?1
order by day desc
limit 1
on conflict (agent_name) do update set
    last_run_at     = excluded.last_run_at,
    last_status     = excluded.last_status,
    last_success_at = excluded.last_success_at,
    updated_at      = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
