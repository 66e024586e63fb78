-- migrations/postgres/0005_next_check.sql, in SQLite's types.
ALTER TABLE agent_expectations ADD COLUMN next_check_at TEXT;
UPDATE agent_expectations SET next_check_at = checked_until;

CREATE INDEX agent_expectations_next_check_idx ON agent_expectations (next_check_at);
