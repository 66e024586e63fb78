-- POST /runs on PostgreSQL: the `running` row, in one statement and one round trip. Either
-- unique index may refuse it (the agent's run_key's, or its running exclusive key's): no row is
-- returned then. It commits durably, as every write does: a claim answered `201` survives a
-- crash of PostgreSQL, so a slot retried after one (a CronJob's pod) finds it claimed and is
-- not run twice (store/runs/claims.rs).
insert into agent_runs
    (run_key, agent_name, started_at, status, trigger, scheduled_for, host, claimant,
     exclusive_key, deadline)
values ($1, $2, $3, 'running', $4, $5, $6, $7, $8, $9)
on conflict do nothing
returning id
