-- migrations/postgres/0006_agents.sql, in SQLite's types.
CREATE TABLE agents (
    agent_name      TEXT NOT NULL PRIMARY KEY,
    last_run_at     TEXT NOT NULL,
    last_status     TEXT NOT NULL,
    last_success_at TEXT,
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

INSERT INTO agents (agent_name, last_run_at, last_status, last_success_at)
SELECT s.agent_name, s.last_run_at, s.last_status,
       (SELECT max(x.last_success_at) FROM agent_daily_summaries x WHERE x.agent_name = s.agent_name)
FROM agent_daily_summaries s
WHERE s.day = (SELECT max(y.day) FROM agent_daily_summaries y WHERE y.agent_name = s.agent_name);
