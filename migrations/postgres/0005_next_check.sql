-- When the watcher next has to look at an expectation without a run of its agent arriving: its
-- next slot's grace ends, or it would go stale (NULL: only a run of its agent can change it).
-- A pass reads only the expectations due by then and those whose agent's summaries changed,
-- not all of them. A new or changed expectation is due at once.
ALTER TABLE agent_expectations ADD COLUMN next_check_at TIMESTAMPTZ;
UPDATE agent_expectations SET next_check_at = checked_until;

CREATE INDEX agent_expectations_next_check_idx ON agent_expectations (next_check_at);
