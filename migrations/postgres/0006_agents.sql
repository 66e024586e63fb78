-- One row per agent that has finished a run: its latest run and latest success, kept up to
-- date in the transaction that stores each run (the same rules as agent_daily_summaries'
-- last_* columns, over all days). The overview (GET /agents, the console) reads these 1 row
-- per agent instead of grouping every daily summary.
CREATE TABLE agents (
    agent_name      VARCHAR(100) PRIMARY KEY,
    last_run_at     TIMESTAMPTZ  NOT NULL,
    last_status     VARCHAR(20)  NOT NULL,
    last_success_at TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ  NOT NULL DEFAULT now()
);

-- From the summaries already stored: each agent's latest day holds its latest run.
INSERT INTO agents (agent_name, last_run_at, last_status, last_success_at)
SELECT DISTINCT ON (agent_name) agent_name, last_run_at, last_status,
       max(last_success_at) OVER (PARTITION BY agent_name)
FROM agent_daily_summaries
ORDER BY agent_name, day DESC;
