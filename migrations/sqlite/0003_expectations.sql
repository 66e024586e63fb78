-- migrations/postgres/0003_expectations.sql, in SQLite's types.
CREATE TABLE agent_expectations (
    name           TEXT NOT NULL CHECK (length(name) <= 100),
    agent_name     TEXT NOT NULL CHECK (length(agent_name) <= 100),
    cron           TEXT CHECK (length(cron) <= 255),
    timezone       TEXT CHECK (length(timezone) <= 64),
    every_seconds  INTEGER CHECK (every_seconds > 0),
    grace_seconds  INTEGER NOT NULL CHECK (grace_seconds >= 0),
    timeout_seconds INTEGER CHECK (timeout_seconds > 0),
    source         TEXT NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'scheduler')),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    checked_until  TEXT NOT NULL,
    CHECK ((cron IS NULL) <> (every_seconds IS NULL)),
    CHECK ((cron IS NULL) = (timezone IS NULL)),
    PRIMARY KEY (source, name)
);

CREATE INDEX agent_expectations_agent_idx ON agent_expectations (agent_name);

CREATE TABLE missed_slots (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_name   TEXT NOT NULL CHECK (length(agent_name) <= 100),
    slot         TEXT NOT NULL,
    detected_at  TEXT NOT NULL,
    UNIQUE (agent_name, slot)
);

CREATE INDEX missed_slots_detected_idx ON missed_slots (detected_at DESC, id DESC);

CREATE TABLE incidents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_name   TEXT NOT NULL CHECK (length(agent_name) <= 100),
    kind         TEXT NOT NULL CHECK (kind IN ('missed', 'failing', 'stale', 'overdue', 'slow')),
    opened_at    TEXT NOT NULL,
    resolved_at  TEXT,
    summary      TEXT NOT NULL,
    CHECK (resolved_at IS NULL OR resolved_at >= opened_at)
);

CREATE UNIQUE INDEX incidents_open_idx ON incidents (agent_name, kind) WHERE resolved_at IS NULL;
CREATE INDEX incidents_opened_idx ON incidents (opened_at DESC, id DESC);

CREATE TABLE alert_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  INTEGER NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    event        TEXT NOT NULL CHECK (event IN ('opened', 'resolved')),
    created_at   TEXT NOT NULL,
    routed_at    TEXT
);

CREATE INDEX alert_events_unrouted_idx ON alert_events (id) WHERE routed_at IS NULL;

CREATE TABLE alert_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         INTEGER NOT NULL REFERENCES alert_events (id) ON DELETE CASCADE,
    route            TEXT NOT NULL CHECK (length(route) <= 100),
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'gave_up')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    UNIQUE (event_id, route)
);

CREATE INDEX alert_deliveries_due_idx ON alert_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE alert_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   INTEGER NOT NULL REFERENCES alert_deliveries (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    attempted_at  TEXT NOT NULL,
    status_code   INTEGER,
    error         TEXT
);

CREATE INDEX alert_attempts_delivery_idx ON alert_attempts (delivery_id, attempt);

CREATE TABLE watcher_state (
    name  TEXT PRIMARY KEY,
    at    TEXT NOT NULL
);
