-- Each agent's latest run and success over all days (the `daily` rules without the day), from
-- `new_runs`, merged into its row of `agents`; after the summaries, so every batch takes its row
-- locks in the same order.
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
