-- One agent's row of `agents` ($1 agent_name), taken again from its daily summaries after
-- recompute_daily.sql changed them (none left: the row is deleted). Its latest day holds its
-- latest run.
with latest as (
    select agent_name, last_run_at, last_status
    from agent_daily_summaries
    where agent_name = $1
    order by day desc
    limit 1
),
emptied as (
    delete from agents where agent_name = $1 and not exists (select 1 from latest)
)
insert into agents as a (agent_name, last_run_at, last_status, last_success_at)
select agent_name, last_run_at, last_status,
       (select max(last_success_at) from agent_daily_summaries where agent_name = $1)
from latest
on conflict (agent_name) do update set
    last_run_at     = excluded.last_run_at,
    last_status     = excluded.last_status,
    last_success_at = excluded.last_success_at,
    updated_at      = now()
