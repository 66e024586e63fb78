-- Operating jobs from the platform (docs/operate.md): a run an operator cancelled is stored
-- as `cancelled` (neither a success nor a failure: no `failing` incident); a backfill's runs
-- carry the trigger `backfill`.
ALTER TABLE agent_runs DROP CONSTRAINT agent_runs_status_check;
ALTER TABLE agent_runs ADD CONSTRAINT agent_runs_status_check
    CHECK (status IN ('running', 'success', 'failed', 'cancelled'));
ALTER TABLE agent_runs DROP CONSTRAINT agent_runs_trigger_check;
ALTER TABLE agent_runs ADD CONSTRAINT agent_runs_trigger_check
    CHECK (trigger IN ('schedule', 'manual', 'api', 'backfill'));

-- Every pause of a job, kept after it ends: a slot inside one was skipped, never missed.
-- A pause ends at `until` or, when resumed before, at `resumed_at`.
CREATE TABLE job_pauses (
    id          BIGSERIAL PRIMARY KEY,
    job         VARCHAR(100) NOT NULL,
    paused_by   VARCHAR(255) NOT NULL,
    note        VARCHAR(1000),
    since       TIMESTAMPTZ  NOT NULL,
    until       TIMESTAMPTZ  CHECK (until > since),
    resumed_at  TIMESTAMPTZ  CHECK (resumed_at >= since),
    resumed_by  VARCHAR(255)
);

-- At most one pause of a job not yet resumed by hand (an expired one is closed by the next).
CREATE UNIQUE INDEX job_pauses_open_idx ON job_pauses (job) WHERE resumed_at IS NULL;
CREATE INDEX job_pauses_job_idx ON job_pauses (job, since);

-- What operators asked the schedulers to do: run a job now, run its past slots (a backfill),
-- cancel a run. A scheduler replica polls for them (GET /scheduler/commands); a run or a
-- backfill's slot is done once a run under its key exists, a cancel once the run ended.
CREATE TABLE job_commands (
    id            BIGSERIAL PRIMARY KEY,
    kind          VARCHAR(20)  NOT NULL CHECK (kind IN ('run', 'cancel', 'backfill')),
    job           VARCHAR(100) NOT NULL,
    run_key       UUID         NOT NULL,
    -- A run's params (a JSON object, as text).
    params        TEXT,
    -- A cancel's reason, as the run's error will say.
    reason        VARCHAR(1300),
    -- A backfill's slot, the backfill it belongs to, and how many of its slots run at once.
    scheduled_for TIMESTAMPTZ,
    batch         UUID,
    max_parallel  INTEGER CHECK (max_parallel > 0),
    requested_by  VARCHAR(255) NOT NULL,
    requested_at  TIMESTAMPTZ  NOT NULL,
    UNIQUE (kind, job, run_key)
);

CREATE INDEX job_commands_requested_idx ON job_commands (requested_at);

-- Every action an operator (or a scheduler on its own) took.
CREATE TABLE audit_log (
    id        BIGSERIAL PRIMARY KEY,
    at        TIMESTAMPTZ  NOT NULL,
    actor     VARCHAR(255) NOT NULL,
    action    VARCHAR(20)  NOT NULL CHECK (action IN ('pause', 'resume', 'run', 'cancel', 'backfill', 'silence', 'unsilence')),
    -- The job acted on; null for a silence's actions.
    job       VARCHAR(100),
    run_key   UUID,
    silence_id BIGINT,
    note      VARCHAR(1000),
    -- What else it carried (a pause's until, a run's params), a JSON object as text.
    details   TEXT
);

CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_job_idx ON audit_log (job, at DESC);

-- What a scheduler's job does after downtime (`catchup_window`; null: `latest`) and its jitter,
-- as its schedule file says: shown by GET /jobs.
ALTER TABLE agent_expectations ADD COLUMN catchup_window VARCHAR(64);
ALTER TABLE agent_expectations ADD COLUMN jitter VARCHAR(64);

-- Silences: while one is in force, the alerts of the incidents it matches (agents by name or
-- prefix, kinds; every kind when `kinds` is null) are held, not sent; one whose transition is
-- still open when the silence ends is sent then, the others never. `agents` and `kinds` are JSON
-- arrays as text.
CREATE TABLE silences (
    id          BIGSERIAL PRIMARY KEY,
    agents      TEXT         NOT NULL,
    kinds       TEXT,
    since       TIMESTAMPTZ  NOT NULL,
    until       TIMESTAMPTZ  NOT NULL CHECK (until > since),
    note        VARCHAR(1000),
    created_by  VARCHAR(255) NOT NULL,
    -- Ended before its `until` (DELETE /silences/{id}).
    ended_at    TIMESTAMPTZ  CHECK (ended_at >= since),
    ended_by    VARCHAR(255)
);

-- An alert event a silence holds: which one, and until when (its end, or sooner if it is
-- ended by hand); routed once that time has passed.
ALTER TABLE alert_events ADD COLUMN silenced_by BIGINT;
ALTER TABLE alert_events ADD COLUMN silenced_until TIMESTAMPTZ;

-- A job may pause itself after failed runs in a row (`pause_after_failures` in its schedule
-- file): the watcher pauses it and opens a `paused` incident, resolved when it is resumed.
ALTER TABLE agent_expectations ADD COLUMN pause_after_failures BIGINT CHECK (pause_after_failures > 0);
ALTER TABLE incidents DROP CONSTRAINT incidents_kind_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_kind_check
    CHECK (kind IN ('missed', 'failing', 'stale', 'overdue', 'slow', 'paused'));
