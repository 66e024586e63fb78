-- no-transaction
-- A run_key and an exclusive key belong to an agent (migrations/postgres/0008 says why).
-- SQLite cannot drop the UNIQUE of a column, so agent_runs is built again by SQLite's
-- documented procedure (lang_altertable.html, "Making Other Kinds Of Table Schema Changes"):
-- foreign keys off (a PRAGMA a transaction cannot change, hence `no-transaction` and this
-- file's own BEGIN and COMMIT), the new table filled, the old one dropped (with foreign keys
-- on, the drop would delete every metric through ON DELETE CASCADE), the new one renamed.
-- agent_metrics' foreign key names `agent_runs` throughout, and then the new table. Ids and
-- the id sequence carry over.
PRAGMA foreign_keys = OFF;

BEGIN IMMEDIATE;

CREATE TABLE agent_runs_0007 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_key       BLOB,
    agent_name    TEXT    NOT NULL CHECK (length(agent_name) <= 100),
    started_at    TEXT    NOT NULL,
    finished_at   TEXT,
    status        TEXT    NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    error_message TEXT,
    duration_ms   INTEGER,
    trigger       TEXT    NOT NULL DEFAULT 'api' CHECK (trigger IN ('schedule', 'manual', 'api')),
    scheduled_for TEXT,
    host          TEXT    CHECK (length(host) <= 255),
    metric_count  INTEGER NOT NULL DEFAULT 0,
    received_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    claimant      TEXT    CHECK (length(claimant) <= 255),
    deadline      TEXT,
    overdue_at    TEXT,
    exclusive_key TEXT    CHECK (length(exclusive_key) <= 255),
    CHECK (finished_at IS NULL OR finished_at >= started_at)
);

INSERT INTO agent_runs_0007
    (id, run_key, agent_name, started_at, finished_at, status, error_message, duration_ms,
     trigger, scheduled_for, host, metric_count, received_at, claimant, deadline, overdue_at,
     exclusive_key)
SELECT id, run_key, agent_name, started_at, finished_at, status, error_message, duration_ms,
       trigger, scheduled_for, host, metric_count, received_at, claimant, deadline, overdue_at,
       exclusive_key
FROM agent_runs;

-- The next id follows the old table's last, even where retention deleted the latest runs.
DELETE FROM sqlite_sequence WHERE name = 'agent_runs_0007';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'agent_runs_0007', seq FROM sqlite_sequence WHERE name = 'agent_runs';

DROP TABLE agent_runs;
ALTER TABLE agent_runs_0007 RENAME TO agent_runs;

CREATE UNIQUE INDEX agent_runs_run_key_agent_idx ON agent_runs (run_key, agent_name);
CREATE INDEX agent_runs_started_at_idx ON agent_runs (started_at DESC, id DESC);
CREATE INDEX agent_runs_agent_started_at_idx ON agent_runs (agent_name, started_at DESC, id DESC);
CREATE INDEX agent_runs_failed_idx ON agent_runs (started_at DESC) WHERE status = 'failed';
CREATE UNIQUE INDEX agent_runs_exclusive_running_idx ON agent_runs (agent_name, exclusive_key)
    WHERE status = 'running' AND exclusive_key IS NOT NULL;
CREATE INDEX agent_runs_running_idx ON agent_runs (agent_name, started_at) WHERE status = 'running';

-- Every running run has a deadline now (migrations/postgres/0008), written as sqlx writes
-- timestamps, so that it compares as text with theirs.
UPDATE agent_runs
SET deadline = strftime('%Y-%m-%dT%H:%M:%S', started_at, '+7 days') || '+00:00'
WHERE status = 'running' AND deadline IS NULL;

COMMIT;

PRAGMA foreign_keys = ON;
