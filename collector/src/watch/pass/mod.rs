//! The watcher's pass: expected slots judged against the runs stored, missed slots recorded,
//! incidents opened and resolved. One pass at a time in a deployment (on PostgreSQL a
//! transaction-scoped advisory lock; SQLite is one process), everything in one transaction:
//! the state is in the database, so a restart or another replica carries on where the last
//! pass committed, and never records a slot or opens an incident twice. What a slot, a run or
//! a silence means is decided by `rules.rs`; this reads the rows it needs and writes its
//! verdicts: the expectations due (`expectations.rs`), then the agents whose runs changed
//! (`latest_runs.rs`).

mod expectations;
mod latest_runs;

use std::collections::{HashMap, HashSet};

use agent_sdk::wire::IncidentKind;
use chrono::{DateTime, NaiveDate, SubsecRound, TimeDelta, Utc};

use super::rules::{self, WatchRules};
use crate::memo::Memo;
use crate::store::{KNOWN_BY_NAME, LastTimes, PauseSpan, Store, StoreError, SummaryChanges, Tx};

/// The advisory lock the replicas take in turn for a pass ("watcher" in ASCII).
pub const WATCH_LOCK: i64 = 0x0077_6174_6368_6572;

/// Most slots of all expectations judged in a pass, so that a pass after a long silence stays
/// a short transaction under a second with its rests (store/pace.rs; bench/watcher.sh, two
/// cores: 1 500 slots were 0.7 s of work unpaced; 200 slots, paced, 0.4-0.75 s); the
/// expectations left are still due, and the service runs the next pass soon
/// ([`Watched::more`]).
pub const SLOTS_PER_PASS_IN_ALL: usize = 200;

/// Most runs of one period expectation read in a pass; the next pass reads on from there.
const RUNS_PER_PASS: usize = 4_000;

/// How far back a pass reads the jobs' pauses: slots older than this are judged without them
/// (the watcher keeps up within seconds; only one down this long judges older slots).
const PAUSES_LOOKBACK: TimeDelta = TimeDelta::days(30);

/// How far back of the newest summary change a pass starts the next one (longer than any
/// write transaction: statements are cancelled after 15 s).
const CURSOR_MARGIN: TimeDelta = TimeDelta::seconds(60);

/// What a pass did; `None` from [`Watcher::pass`] when another replica is doing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watched {
    pub missed: usize,
    pub late: usize,
    pub opened: usize,
    pub resolved: usize,
    /// The pass stopped at its most slots ([`SLOTS_PER_PASS_IN_ALL`]): more may be due now.
    pub more: bool,
}

/// The summaries this process's passes judged, per (agent, day) the `updated_at` judged: the
/// cursor's margin brings them back for a minute, and a row unchanged since is not judged
/// again (a restart forgets, and judges them once more: judging is idempotent).
type JudgedSummaries = Memo<(String, NaiveDate), DateTime<Utc>>;

/// Runs passes on a store with its rules. Clones share what the passes remember.
#[derive(Debug, Clone)]
pub struct Watcher {
    store: Store,
    rules: WatchRules,
    judged: JudgedSummaries,
}

impl Watcher {
    pub fn new(store: Store, rules: WatchRules) -> Self {
        Self {
            store,
            rules,
            judged: Memo::default(),
        }
    }

    pub fn rules(&self) -> &WatchRules {
        &self.rules
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One pass of the watcher at `now`.
    pub async fn pass(&self, now: DateTime<Utc>) -> Result<Option<Watched>, StoreError> {
        // Microseconds, as both backends keep them.
        let now = now.trunc_subsecs(6);
        // Background work: paced, so that passes however frequent leave ingest its cores.
        let mut tx = Tx::begin_paced(&self.store).await?;
        if !tx.try_lock(WATCH_LOCK).await? {
            return Ok(None);
        }
        // The open incidents before what they are judged against: the overdue check (its own
        // lock, so maybe another replica's, running now) opens `overdue` and writes its run's
        // summaries in one commit. Read after the summaries, an incident opened in between
        // would meet the latest status from before it, a success, and be resolved at once.
        let open = tx.open_incidents().await?;
        let changes = tx
            .summary_changes((now - TimeDelta::days(1)).date_naive())
            .await?;
        let changed = self.changed(&changes);
        let expectations = tx.due_expectations(now, &changes, &changed).await?;
        // The agents this pass judges: those expected now, and those that ran.
        let mut agents: Vec<&str> = expectations
            .iter()
            .map(|e| e.agent_name.as_str())
            .chain(changed.iter().map(String::as_str))
            .collect();
        agents.sort_unstable();
        agents.dedup();
        // A long list of names costs more than reading every agent's: past KNOWN_BY_NAME, all.
        let agents = (agents.len() <= KNOWN_BY_NAME).then_some(agents.as_slice());
        let last = tx
            .last_times(agents)
            .await?
            .into_iter()
            .map(|r| (r.agent_name.clone(), r))
            .collect();
        // The jobs' pauses, read only by a pass with something to judge: slots, changed runs,
        // or a `paused` incident to resolve. An idle pass reads nothing more than before.
        let judges_pauses = !expectations.is_empty()
            || !changed.is_empty()
            || open.iter().any(|(_, kind)| *kind == IncidentKind::Paused);
        let paused = if judges_pauses {
            tx.pauses_since(now - PAUSES_LOOKBACK).await?
        } else {
            HashMap::new()
        };
        let pause_after = if changed.is_empty() {
            HashMap::new()
        } else {
            tx.pause_after_failures().await?
        };
        let mut pass = Pass {
            tx,
            known: Known {
                last,
                open,
                paused,
                pause_after,
            },
            now,
            rules: self.rules,
            watched: Watched::default(),
        };
        let mut budget = SLOTS_PER_PASS_IN_ALL;
        for expectation in &expectations {
            if budget == 0 {
                break;
            }
            let cadence = match self.store.cadence(expectation) {
                Ok(cadence) => cadence,
                Err(err) => {
                    tracing::warn!(expectation = %expectation.name, error = %err, "an expectation that cannot be read is skipped");
                    continue;
                }
            };
            budget -= pass
                .judge_expectation(expectation, &cadence, budget)
                .await?;
        }
        let judged: Vec<_> = changes
            .rows
            .iter()
            .filter(|r| changed.contains(&r.agent_name))
            .map(|r| ((r.agent_name.clone(), r.day), r.updated_at))
            .collect();
        pass.watched.more = budget == 0;
        pass.judge_latest_runs(changes, &changed).await?;
        pass.resolve_resumed().await?;
        let Pass { tx, watched, .. } = pass;
        tx.commit().await?;
        // Remembered once committed.
        self.judged.insert_all(judged);
        Ok(Some(watched))
    }

    /// The agents whose summaries changed since the last pass and were not judged as they are.
    fn changed(&self, changes: &SummaryChanges) -> HashSet<String> {
        changes
            .rows
            .iter()
            .filter(|r| {
                changes.seen_until.is_none_or(|seen| r.updated_at > seen)
                    && self.judged.get(&(r.agent_name.clone(), r.day)) != Some(r.updated_at)
            })
            .map(|r| r.agent_name.clone())
            .collect()
    }
}

/// What a pass reads once instead of once per expectation: each agent's latest run and latest
/// success (from the summaries), and the open incidents, kept up to date as the pass opens and
/// resolves them.
struct Known {
    /// Per agent: its latest run and latest success.
    last: HashMap<String, LastTimes>,
    open: HashSet<(String, IncidentKind)>,
    /// Per job: its pauses (`job_pauses`) of the last [`PAUSES_LOOKBACK`].
    paused: HashMap<String, Vec<PauseSpan>>,
    /// Per job that pauses itself after failed runs in a row: how many.
    pause_after: HashMap<String, u32>,
}

impl Known {
    fn is_open(&self, agent: &str, kind: IncidentKind) -> bool {
        self.open.contains(&(agent.to_owned(), kind))
    }

    fn last_run(&self, agent: &str) -> Option<DateTime<Utc>> {
        self.last.get(agent).and_then(|t| t.last_run_at)
    }

    /// Whether the job `agent` was paused at `at`.
    fn paused_at(&self, agent: &str, at: DateTime<Utc>) -> bool {
        self.paused
            .get(agent)
            .is_some_and(|pauses| rules::is_paused(pauses, at))
    }

    /// Whether one of the job `agent`'s pauses ended after `at` (it was resumed since).
    fn resumed_after(&self, agent: &str, at: DateTime<Utc>) -> bool {
        self.paused.get(agent).is_some_and(|pauses| {
            pauses
                .iter()
                .any(|(_, end)| end.is_some_and(|end| end > at))
        })
    }

    fn last_success(&self, agent: &str) -> Option<DateTime<Utc>> {
        self.last.get(agent).and_then(|t| t.last_success_at)
    }
}

/// A pass under way: its transaction, what it knows, its time, rules and tally.
struct Pass {
    tx: Tx,
    known: Known,
    now: DateTime<Utc>,
    rules: WatchRules,
    watched: Watched,
}

impl Pass {
    /// Opens `agent`'s incident of `kind` unless this pass knows it open: `true` when opened.
    async fn open(
        &mut self,
        agent: &str,
        kind: IncidentKind,
        summary: &str,
    ) -> Result<bool, StoreError> {
        if self.known.is_open(agent, kind) {
            return Ok(false);
        }
        let opened = self
            .tx
            .open_incident(agent, kind, self.now, summary)
            .await?;
        self.known.open.insert((agent.to_owned(), kind));
        if opened {
            self.watched.opened += 1;
        }
        Ok(opened)
    }

    /// Resolves `agent`'s incident of `kind` if this pass knows it open: `true` when resolved.
    async fn resolve(&mut self, agent: &str, kind: IncidentKind) -> Result<bool, StoreError> {
        if !self.known.open.remove(&(agent.to_owned(), kind)) {
            return Ok(false);
        }
        let resolved = self.tx.resolve_incident(agent, kind, self.now).await?;
        if resolved {
            self.watched.resolved += 1;
        }
        Ok(resolved)
    }
}
