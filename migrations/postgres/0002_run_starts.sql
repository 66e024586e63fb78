-- Runs announce their start (POST /runs): the row is `running` until the report that finishes
-- it (POST /metrics, the same run_key) completes it. `claimant` is who runs it (a scheduler
-- process or pod); `deadline` is when it is overdue; `overdue_at` is when the collector, having
-- no result by then, closed it as failed (a result that arrives later still completes it);
-- `exclusive_key`, when set, is held by one running run at a time.
ALTER TABLE agent_runs
    ADD COLUMN claimant VARCHAR(255),
    ADD COLUMN deadline TIMESTAMPTZ,
    ADD COLUMN overdue_at TIMESTAMPTZ,
    ADD COLUMN exclusive_key VARCHAR(255);

-- At most one running run per exclusive key (a scheduler job with concurrency_policy =
-- "forbid"), whichever replica started it: the index refuses a second.
CREATE UNIQUE INDEX agent_runs_exclusive_running_idx ON agent_runs (exclusive_key)
    WHERE status = 'running' AND exclusive_key IS NOT NULL;

-- What runs now, per agent (GET /agents) and past its deadline: small, since runs finish.
CREATE INDEX agent_runs_running_idx ON agent_runs (agent_name, started_at) WHERE status = 'running';
