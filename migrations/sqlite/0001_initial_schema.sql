-- The embedded backend's schema: the same tables, columns and rules as migrations/postgres
-- (read that file for what each holds), in SQLite's types.
--
-- - Timestamps are RFC 3339 text in UTC, as sqlx writes them: they sort as they compare.
-- - UUIDs are 16-byte blobs; days are 'YYYY-MM-DD' text.
-- - Decimals are TEXT in PostgreSQL's NUMERIC form, digit for digit (SQLite's NUMERIC would
--   turn 12.50 into the float 12.5): metric_value, and the per-metric daily aggregates, which
--   the collector computes in exact decimal arithmetic.

CREATE TABLE agent_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_key       BLOB UNIQUE,
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
    CHECK (finished_at IS NULL OR finished_at >= started_at)
);

CREATE INDEX agent_runs_started_at_idx ON agent_runs (started_at DESC, id DESC);
CREATE INDEX agent_runs_agent_started_at_idx ON agent_runs (agent_name, started_at DESC, id DESC);
CREATE INDEX agent_runs_failed_idx ON agent_runs (started_at DESC) WHERE status = 'failed';

CREATE TABLE agent_metrics (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       INTEGER NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    agent_name   TEXT    NOT NULL CHECK (length(agent_name) <= 100),
    metric_name  TEXT    NOT NULL CHECK (length(metric_name) <= 200),
    metric_value TEXT,
    metric_text  TEXT,
    recorded_at  TEXT    NOT NULL,
    CHECK ((metric_value IS NULL) <> (metric_text IS NULL))
);

CREATE INDEX agent_metrics_run_id_idx ON agent_metrics (run_id);
CREATE INDEX agent_metrics_agent_recorded_at_idx ON agent_metrics (agent_name, recorded_at DESC, id DESC);
CREATE INDEX agent_metrics_series_idx ON agent_metrics (agent_name, metric_name, recorded_at DESC, id DESC);
CREATE INDEX agent_metrics_recorded_at_idx ON agent_metrics (recorded_at DESC, id DESC);

CREATE TABLE agent_daily_summaries (
    agent_name        TEXT    NOT NULL,
    day               TEXT    NOT NULL,
    run_count         INTEGER NOT NULL,
    success_count     INTEGER NOT NULL,
    failure_count     INTEGER NOT NULL,
    total_duration_ms INTEGER NOT NULL,
    min_duration_ms   INTEGER,
    max_duration_ms   INTEGER,
    last_run_at       TEXT    NOT NULL,
    last_status       TEXT    NOT NULL,
    last_success_at   TEXT,
    updated_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (agent_name, day)
) WITHOUT ROWID;

CREATE INDEX agent_daily_summaries_day_idx ON agent_daily_summaries (day, agent_name);

CREATE TABLE agent_metric_daily_summaries (
    agent_name       TEXT    NOT NULL,
    metric_name      TEXT    NOT NULL,
    day              TEXT    NOT NULL,
    value_count      INTEGER NOT NULL,
    value_sum        TEXT    NOT NULL,
    value_min        TEXT    NOT NULL,
    value_max        TEXT    NOT NULL,
    last_value       TEXT    NOT NULL,
    last_recorded_at TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (agent_name, metric_name, day)
) WITHOUT ROWID;
