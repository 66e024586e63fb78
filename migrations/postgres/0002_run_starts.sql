-- Runs announce their start (POST /runs): the row is `running` until the report that finishes
-- it (POST /metrics, the same run_key) completes it. `claimant` is who runs it (a scheduler
-- process or pod); `deadline` is when it is overdue; `overdue_at` is when the collector, having
-- no result by then, closed it as failed (a result that arrives later still completes it).
ALTER TABLE agent_runs
    ADD COLUMN claimant VARCHAR(255),
    ADD COLUMN deadline TIMESTAMPTZ,
    ADD COLUMN overdue_at TIMESTAMPTZ;

-- What runs now, per agent (GET /agents) and past its deadline: small, since runs finish.
CREATE INDEX agent_runs_running_idx ON agent_runs (agent_name, started_at) WHERE status = 'running';
