-- migrations/postgres/0002_run_starts.sql, in SQLite's types.
ALTER TABLE agent_runs ADD COLUMN claimant TEXT CHECK (length(claimant) <= 255);
ALTER TABLE agent_runs ADD COLUMN deadline TEXT;
ALTER TABLE agent_runs ADD COLUMN overdue_at TEXT;
ALTER TABLE agent_runs ADD COLUMN exclusive_key TEXT CHECK (length(exclusive_key) <= 255);

CREATE UNIQUE INDEX agent_runs_exclusive_running_idx ON agent_runs (exclusive_key)
    WHERE status = 'running' AND exclusive_key IS NOT NULL;

CREATE INDEX agent_runs_running_idx ON agent_runs (agent_name, started_at) WHERE status = 'running';
