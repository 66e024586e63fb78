-- migrations/postgres/0004_late_slots.sql, in SQLite's types.
CREATE TABLE late_slots (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_name   TEXT NOT NULL CHECK (length(agent_name) <= 100),
    slot         TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    detected_at  TEXT NOT NULL,
    UNIQUE (agent_name, slot),
    CHECK (started_at > slot)
);

CREATE INDEX late_slots_detected_idx ON late_slots (detected_at DESC, id DESC);
