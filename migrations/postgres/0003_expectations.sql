-- What should run (expectations), what did not (missed slots), and what went wrong (incidents):
-- written by the collector's watcher and the expectation endpoints, read by the dashboard.

-- One row per expectation: a cron expression in a time zone, or a period ("every"), and a
-- grace. `name` is the agent's name (a scheduler's job is named after the agent it reports as);
-- an agent may have one expectation of each source.
CREATE TABLE agent_expectations (
    name           VARCHAR(100) NOT NULL,
    agent_name     VARCHAR(100) NOT NULL,
    cron           VARCHAR(255),
    timezone       VARCHAR(64),
    every_seconds  BIGINT CHECK (every_seconds > 0),
    grace_seconds  BIGINT NOT NULL CHECK (grace_seconds >= 0),
    timeout_seconds BIGINT CHECK (timeout_seconds > 0),
    source         VARCHAR(20) NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'scheduler')),
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    -- The watcher's progress: every slot at or before it has been judged (met or missed).
    checked_until  TIMESTAMPTZ NOT NULL,
    CHECK ((cron IS NULL) <> (every_seconds IS NULL)),
    CHECK ((cron IS NULL) = (timezone IS NULL)),
    PRIMARY KEY (source, name)
);

CREATE INDEX agent_expectations_agent_idx ON agent_expectations (agent_name);

-- A slot no run answered within its grace.
CREATE TABLE missed_slots (
    id           BIGSERIAL PRIMARY KEY,
    agent_name   VARCHAR(100) NOT NULL,
    slot         TIMESTAMPTZ NOT NULL,
    detected_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (agent_name, slot)
);

CREATE INDEX missed_slots_detected_idx ON missed_slots (detected_at DESC, id DESC);

-- One open incident per agent and kind at a time (the partial unique index).
CREATE TABLE incidents (
    id           BIGSERIAL PRIMARY KEY,
    agent_name   VARCHAR(100) NOT NULL,
    kind         VARCHAR(20) NOT NULL CHECK (kind IN ('missed', 'failing', 'stale', 'overdue', 'slow')),
    opened_at    TIMESTAMPTZ NOT NULL,
    resolved_at  TIMESTAMPTZ,
    summary      TEXT NOT NULL,
    CHECK (resolved_at IS NULL OR resolved_at >= opened_at)
);

CREATE UNIQUE INDEX incidents_open_idx ON incidents (agent_name, kind) WHERE resolved_at IS NULL;
CREATE INDEX incidents_opened_idx ON incidents (opened_at DESC, id DESC);

-- Alerts: each incident opened or resolved is an event; each event goes to every route of the
-- alerts file that matches it (a delivery), tried until delivered or given up; every attempt
-- is recorded.
CREATE TABLE alert_events (
    id           BIGSERIAL PRIMARY KEY,
    incident_id  BIGINT NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    event        VARCHAR(20) NOT NULL CHECK (event IN ('opened', 'resolved')),
    created_at   TIMESTAMPTZ NOT NULL,
    -- Set once its deliveries exist (the routes matched when the sender first saw it).
    routed_at    TIMESTAMPTZ
);

CREATE INDEX alert_events_unrouted_idx ON alert_events (id) WHERE routed_at IS NULL;

CREATE TABLE alert_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    event_id         BIGINT NOT NULL REFERENCES alert_events (id) ON DELETE CASCADE,
    route            VARCHAR(100) NOT NULL,
    status           VARCHAR(20) NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'gave_up')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (event_id, route)
);

CREATE INDEX alert_deliveries_due_idx ON alert_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE alert_attempts (
    id            BIGSERIAL PRIMARY KEY,
    delivery_id   BIGINT NOT NULL REFERENCES alert_deliveries (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    attempted_at  TIMESTAMPTZ NOT NULL,
    status_code   INTEGER,
    error         TEXT
);

CREATE INDEX alert_attempts_delivery_idx ON alert_attempts (delivery_id, attempt);

-- The watcher's progress through the daily summaries: agents whose summaries changed before
-- `at` have been judged for `failing` and `slow` (a margin re-reads the last minute).
CREATE TABLE watcher_state (
    name  VARCHAR(50) PRIMARY KEY,
    at    TIMESTAMPTZ NOT NULL
);
