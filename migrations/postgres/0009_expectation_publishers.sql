-- Who published a scheduler's expectation: the subject of the token that sent it (a scheduler
-- and its replicas share one). A publication replaces only its publisher's own expectations,
-- of the agents its token may touch: before, `{"jobs": []}` from a token limited to one agent
-- erased every agent's, and two schedulers with different schedule files erased each other's.
-- NULL: published before publishers were recorded; the next publisher of the row takes it.
ALTER TABLE agent_expectations ADD COLUMN publisher VARCHAR(255);
