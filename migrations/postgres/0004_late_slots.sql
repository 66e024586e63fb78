-- A slot answered late: the run that answered it started more than SLOT_LATE_AFTER after the
-- slot, but within its grace (later, the slot is in missed_slots). A slot in neither table was
-- on time. Written by the collector's watcher, read by the dashboard and GET /late.
CREATE TABLE late_slots (
    id           BIGSERIAL PRIMARY KEY,
    agent_name   VARCHAR(100) NOT NULL,
    slot         TIMESTAMPTZ NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    detected_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (agent_name, slot),
    CHECK (started_at > slot)
);

CREATE INDEX late_slots_detected_idx ON late_slots (detected_at DESC, id DESC);
