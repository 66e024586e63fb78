-- POST /runs on PostgreSQL: the `running` row, in one statement and one round trip. Either
-- unique index may refuse it (the run_key's, or the running exclusive key's): no row is
-- returned then. The statement's own transaction commits without waiting for its WAL to reach
-- the disk (set_config(…, true): this transaction only): a start is a claim, not a result
-- (store/runs/claims.rs says what a crash can lose).
insert into agent_runs
    (run_key, agent_name, started_at, status, trigger, scheduled_for, host, claimant,
     exclusive_key, deadline)
select $1, $2, $3, 'running', $4, $5, $6, $7, $8, $9
from (select set_config('synchronous_commit', 'off', true)) as async_commit
on conflict do nothing
returning id
