-- no-transaction
-- Operating jobs from the platform (migrations/postgres/0010 says why): the status `cancelled`
-- and the trigger `backfill` widen agent_runs' CHECKs, and the kind `paused` incidents', which
-- SQLite cannot alter: both tables are built again as 0007 did (its comment gives the
-- procedure), with the same columns and indexes.
PRAGMA foreign_keys = OFF;

BEGIN IMMEDIATE;

CREATE TABLE agent_runs_0009 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_key       BLOB,
    agent_name    TEXT    NOT NULL CHECK (length(agent_name) <= 100),
    started_at    TEXT    NOT NULL,
    finished_at   TEXT,
    status        TEXT    NOT NULL CHECK (status IN ('running', 'success', 'failed', 'cancelled')),
    error_message TEXT,
    duration_ms   INTEGER,
    trigger       TEXT    NOT NULL DEFAULT 'api' CHECK (trigger IN ('schedule', 'manual', 'api', 'backfill')),
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

INSERT INTO agent_runs_0009
    (id, run_key, agent_name, started_at, finished_at, status, error_message, duration_ms,
     trigger, scheduled_for, host, metric_count, received_at, claimant, deadline, overdue_at,
     exclusive_key)
SELECT id, run_key, agent_name, started_at, finished_at, status, error_message, duration_ms,
       trigger, scheduled_for, host, metric_count, received_at, claimant, deadline, overdue_at,
       exclusive_key
FROM agent_runs;

-- The next id follows the old table's last, even where retention deleted the latest runs.
DELETE FROM sqlite_sequence WHERE name = 'agent_runs_0009';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'agent_runs_0009', seq FROM sqlite_sequence WHERE name = 'agent_runs';

DROP TABLE agent_runs;
ALTER TABLE agent_runs_0009 RENAME TO agent_runs;

CREATE UNIQUE INDEX agent_runs_run_key_agent_idx ON agent_runs (run_key, agent_name);
CREATE INDEX agent_runs_started_at_idx ON agent_runs (started_at DESC, id DESC);
CREATE INDEX agent_runs_agent_started_at_idx ON agent_runs (agent_name, started_at DESC, id DESC);
CREATE INDEX agent_runs_failed_idx ON agent_runs (started_at DESC) WHERE status = 'failed';
CREATE UNIQUE INDEX agent_runs_exclusive_running_idx ON agent_runs (agent_name, exclusive_key)
    WHERE status = 'running' AND exclusive_key IS NOT NULL;
CREATE INDEX agent_runs_running_idx ON agent_runs (agent_name, started_at) WHERE status = 'running';

CREATE TABLE job_pauses (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job         TEXT NOT NULL CHECK (length(job) <= 100),
    paused_by   TEXT NOT NULL CHECK (length(paused_by) <= 255),
    note        TEXT CHECK (length(note) <= 1000),
    since       TEXT NOT NULL,
    until       TEXT CHECK (until > since),
    resumed_at  TEXT CHECK (resumed_at >= since),
    resumed_by  TEXT CHECK (length(resumed_by) <= 255)
);

CREATE UNIQUE INDEX job_pauses_open_idx ON job_pauses (job) WHERE resumed_at IS NULL;
CREATE INDEX job_pauses_job_idx ON job_pauses (job, since);

CREATE TABLE job_commands (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL CHECK (kind IN ('run', 'cancel', 'backfill')),
    job           TEXT NOT NULL CHECK (length(job) <= 100),
    run_key       BLOB NOT NULL,
    params        TEXT,
    reason        TEXT CHECK (length(reason) <= 1300),
    scheduled_for TEXT,
    batch         BLOB,
    max_parallel  INTEGER CHECK (max_parallel > 0),
    requested_by  TEXT NOT NULL CHECK (length(requested_by) <= 255),
    requested_at  TEXT NOT NULL,
    UNIQUE (kind, job, run_key)
);

CREATE INDEX job_commands_requested_idx ON job_commands (requested_at);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL CHECK (length(actor) <= 255),
    action    TEXT NOT NULL CHECK (action IN ('pause', 'resume', 'run', 'cancel', 'backfill', 'silence', 'unsilence')),
    job       TEXT CHECK (length(job) <= 100),
    run_key   BLOB,
    silence_id INTEGER,
    note      TEXT CHECK (length(note) <= 1000),
    details   TEXT
);

CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_job_idx ON audit_log (job, at DESC);

-- What a scheduler's job does after downtime (`catchup_window`; null: `latest`) and its jitter,
-- as its schedule file says: shown by GET /jobs.
ALTER TABLE agent_expectations ADD COLUMN catchup_window TEXT;
ALTER TABLE agent_expectations ADD COLUMN jitter TEXT;
ALTER TABLE agent_expectations ADD COLUMN pause_after_failures INTEGER CHECK (pause_after_failures > 0);

CREATE TABLE incidents_0009 (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_name   TEXT NOT NULL CHECK (length(agent_name) <= 100),
    kind         TEXT NOT NULL CHECK (kind IN ('missed', 'failing', 'stale', 'overdue', 'slow', 'paused')),
    opened_at    TEXT NOT NULL,
    resolved_at  TEXT,
    summary      TEXT NOT NULL,
    CHECK (resolved_at IS NULL OR resolved_at >= opened_at)
);

INSERT INTO incidents_0009 (id, agent_name, kind, opened_at, resolved_at, summary)
SELECT id, agent_name, kind, opened_at, resolved_at, summary FROM incidents;

DELETE FROM sqlite_sequence WHERE name = 'incidents_0009';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'incidents_0009', seq FROM sqlite_sequence WHERE name = 'incidents';

DROP TABLE incidents;
ALTER TABLE incidents_0009 RENAME TO incidents;

CREATE UNIQUE INDEX incidents_open_idx ON incidents (agent_name, kind) WHERE resolved_at IS NULL;
CREATE INDEX incidents_opened_idx ON incidents (opened_at DESC, id DESC);

CREATE TABLE silences (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    agents      TEXT NOT NULL,
    kinds       TEXT,
    since       TEXT NOT NULL,
    until       TEXT NOT NULL CHECK (until > since),
    note        TEXT CHECK (length(note) <= 1000),
    created_by  TEXT NOT NULL CHECK (length(created_by) <= 255),
    ended_at    TEXT CHECK (ended_at >= since),
    ended_by    TEXT CHECK (length(ended_by) <= 255)
);

ALTER TABLE alert_events ADD COLUMN silenced_by INTEGER;
ALTER TABLE alert_events ADD COLUMN silenced_until TEXT;

COMMIT;

PRAGMA foreign_keys = ON;
