-- A run_key and an exclusive key belong to an agent: unique per agent, not across agents.
-- Before, a token limited to agent A could start a run of A under B's next slot key (a UUIDv5
-- of `job@slot` under a public namespace, so predictable) and B's scheduler then found the
-- key taken and skipped its slot; or hold B's `forbid` key. Now two agents' keys cannot
-- collide: a start, a report or an exclusive key of A never meets B's.
-- (run_key, agent_name): GET /runs?run_key= still finds a key by the index's first column.
CREATE UNIQUE INDEX agent_runs_run_key_agent_idx ON agent_runs (run_key, agent_name);
ALTER TABLE agent_runs DROP CONSTRAINT agent_runs_run_key_key;

DROP INDEX agent_runs_exclusive_running_idx;
CREATE UNIQUE INDEX agent_runs_exclusive_running_idx ON agent_runs (agent_name, exclusive_key)
    WHERE status = 'running' AND exclusive_key IS NOT NULL;

-- Every running run has a deadline now (POST /runs gives one to a start without): a run
-- started before without one is closed as overdue a week after it started, the longest
-- deadline a start may ask for.
UPDATE agent_runs SET deadline = started_at + interval '7 days'
WHERE status = 'running' AND deadline IS NULL;
