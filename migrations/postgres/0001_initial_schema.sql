-- Runs, their metrics, and the daily aggregates the dashboard reads.
-- Table and column names are the dashboard's contract (docs/dashboard.md): add, never rename.
-- Days are UTC calendar days.

CREATE TABLE agent_runs (
    id            BIGSERIAL PRIMARY KEY,
    -- Idempotency key: a report carrying a key already stored is not stored again.
    run_key       UUID UNIQUE,
    agent_name    VARCHAR(100) NOT NULL,
    started_at    TIMESTAMPTZ  NOT NULL,
    finished_at   TIMESTAMPTZ,
    status        VARCHAR(20)  NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    error_message TEXT,
    duration_ms   BIGINT,
    trigger       VARCHAR(20)  NOT NULL DEFAULT 'api' CHECK (trigger IN ('schedule', 'manual', 'api')),
    scheduled_for TIMESTAMPTZ,
    host          VARCHAR(255),
    metric_count  INTEGER      NOT NULL DEFAULT 0,
    received_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CHECK (finished_at IS NULL OR finished_at >= started_at)
);

-- Latest runs: `ORDER BY started_at DESC` (the original debugging query, GET /runs).
CREATE INDEX agent_runs_started_at_idx ON agent_runs (started_at DESC, id DESC);
-- One agent's runs over time, its last run.
CREATE INDEX agent_runs_agent_started_at_idx ON agent_runs (agent_name, started_at DESC, id DESC);
-- Recent failures, small because failures are rare.
CREATE INDEX agent_runs_failed_idx ON agent_runs (started_at DESC) WHERE status = 'failed';

CREATE TABLE agent_metrics (
    id           BIGSERIAL PRIMARY KEY,
    run_id       BIGINT       NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    agent_name   VARCHAR(100) NOT NULL,
    metric_name  VARCHAR(200) NOT NULL,
    -- Numbers exactly as sent (0.1 stays 0.1); booleans as 1/0.
    metric_value NUMERIC,
    -- String values.
    metric_text  TEXT,
    recorded_at  TIMESTAMPTZ  NOT NULL,
    CHECK ((metric_value IS NULL) <> (metric_text IS NULL))
);

-- A run's metrics (GET /runs/{id}; also serves the foreign key's cascade).
CREATE INDEX agent_metrics_run_id_idx ON agent_metrics (run_id);
-- One agent's metrics, newest first (the original debugging query).
CREATE INDEX agent_metrics_agent_recorded_at_idx ON agent_metrics (agent_name, recorded_at DESC, id DESC);
-- One metric's series.
CREATE INDEX agent_metrics_series_idx ON agent_metrics (agent_name, metric_name, recorded_at DESC, id DESC);
-- All metrics, newest first (GET /metrics without filters).
CREATE INDEX agent_metrics_recorded_at_idx ON agent_metrics (recorded_at DESC, id DESC);

-- Per agent and UTC day of started_at, kept up to date in the transaction that stores each run.
CREATE TABLE agent_daily_summaries (
    agent_name        VARCHAR(100) NOT NULL,
    day               DATE         NOT NULL,
    run_count         BIGINT       NOT NULL,
    success_count     BIGINT       NOT NULL,
    failure_count     BIGINT       NOT NULL,
    total_duration_ms BIGINT       NOT NULL,
    min_duration_ms   BIGINT,
    max_duration_ms   BIGINT,
    last_run_at       TIMESTAMPTZ  NOT NULL,
    last_status       VARCHAR(20)  NOT NULL,
    last_success_at   TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_name, day)
);

-- All agents over a date range.
CREATE INDEX agent_daily_summaries_day_idx ON agent_daily_summaries (day, agent_name);

-- Per agent, numeric metric and UTC day of recorded_at, for charts. Text metrics are not
-- aggregated; booleans count as 1/0.
CREATE TABLE agent_metric_daily_summaries (
    agent_name       VARCHAR(100) NOT NULL,
    metric_name      VARCHAR(200) NOT NULL,
    day              DATE         NOT NULL,
    value_count      BIGINT       NOT NULL,
    value_sum        NUMERIC      NOT NULL,
    value_min        NUMERIC      NOT NULL,
    value_max        NUMERIC      NOT NULL,
    last_value       NUMERIC      NOT NULL,
    last_recorded_at TIMESTAMPTZ  NOT NULL,
    updated_at       TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_name, metric_name, day)
);
