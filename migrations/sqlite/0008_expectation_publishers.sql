-- Who published a scheduler's expectation (migrations/postgres/0009 says why).
ALTER TABLE agent_expectations ADD COLUMN publisher TEXT CHECK (length(publisher) <= 255);
