//! The watcher's pass: expected slots judged against the runs stored, missed slots recorded,
//! incidents opened and resolved. One pass at a time in a deployment (on PostgreSQL a
//! transaction-scoped advisory lock; SQLite is one process), everything in one transaction:
//! the state is in the database, so a restart or another replica carries on where the last
//! pass committed, and never records a slot or opens an incident twice. What a slot, a run or
//! a silence means is decided by `rules.rs`; this reads the rows it needs and writes its
//! verdicts.

use std::collections::{HashMap, HashSet};

use agent_sdk::wire::{IncidentKind, RunStatus};
use chrono::{DateTime, NaiveDate, SubsecRound, TimeDelta, Utc};

use super::rules::{self, Judged, Slowness, Staleness, WatchRules};
use crate::domain::Cadence;
use crate::memo::Memo;
use crate::store::{
    ExpectationRow, KNOWN_BY_NAME, LastTimes, PauseSpan, Store, StoreError, SummaryChange,
    SummaryChanges, Tx,
};

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
        let paused = tx.pauses_since(now - PAUSES_LOOKBACK).await?;
        let pause_after = tx.pause_after_failures().await?;
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

    /// Judges `expectation`'s slots (at most `budget`) and its staleness, and records its
    /// progress: how many slots it judged.
    async fn judge_expectation(
        &mut self,
        expectation: &ExpectationRow,
        cadence: &Cadence,
        budget: usize,
    ) -> Result<usize, StoreError> {
        let (judged, pending, check_at) = self.due_slots(expectation, cadence, budget).await?;
        let checked = rules::progress(cadence, expectation.checked_until, &judged);
        self.record_slots(expectation, &judged).await?;
        let period = rules::period(cadence, pending);
        let stale_at = self.judge_staleness(expectation, period).await?;
        let next_check = [check_at, stale_at].into_iter().flatten().min();
        if checked > expectation.checked_until || next_check != expectation.next_check_at {
            self.tx
                .set_expectation_progress(
                    expectation,
                    Ord::max(checked, expectation.checked_until),
                    next_check,
                )
                .await?;
        }
        Ok(judged.len())
    }

    /// `expectation`'s slots past their grace, each with the run that answered it; a cron's
    /// first slot not yet judged; when a slot is next due to be judged, if no run arrives.
    async fn due_slots(
        &mut self,
        expectation: &ExpectationRow,
        cadence: &Cadence,
        budget: usize,
    ) -> Result<(Vec<Judged>, Option<DateTime<Utc>>, Option<DateTime<Utc>>), StoreError> {
        let agent = expectation.agent_name.as_str();
        let grace = expectation.grace();
        let checked = expectation.checked_until;
        let last_run = self.known.last_run(agent);
        match cadence {
            Cadence::Cron(_) => {
                let due = rules::due_cron_slots(cadence, checked, grace, self.now, budget);
                let Some((from, to)) = rules::answer_window(&due.slots, grace) else {
                    return Ok((Vec::new(), due.pending, due.check_at));
                };
                // No run since the first slot's window opened (the summaries say): no query.
                let runs = match last_run {
                    Some(latest) if latest >= from => {
                        self.tx.run_starts(agent, from, to, None).await?
                    }
                    _ => Vec::new(),
                };
                let judged = rules::answer_cron_slots(&due.slots, &runs, grace);
                Ok((judged, due.pending, due.check_at))
            }
            Cadence::Every(_) => {
                // The runs are read only when the summaries show one since, so an idle
                // expectation costs no query.
                let runs = match last_run {
                    Some(last) if last > checked => {
                        self.tx
                            .run_starts(agent, checked, last, Some(RUNS_PER_PASS))
                            .await?
                    }
                    _ => Vec::new(),
                };
                let cut_short = runs.len() == RUNS_PER_PASS;
                let slots = rules::judge_period_slots(
                    cadence, checked, grace, self.now, budget, runs, cut_short, last_run,
                );
                Ok((slots.judged, None, slots.check_at))
            }
        }
    }

    /// Each slot judged: a late answer recorded, a missed slot recorded with its incident
    /// opened; an answered one resolves `missed`.
    async fn record_slots(
        &mut self,
        expectation: &ExpectationRow,
        judged: &[Judged],
    ) -> Result<(), StoreError> {
        let agent = expectation.agent_name.as_str();
        let now = self.now;
        for &(slot, answer) in judged {
            if let Some(started) = answer {
                if rules::is_late(slot, started, self.rules.late_after) {
                    let late = self.tx.record_late(agent, slot, started, now).await?;
                    if late > 0 {
                        tracing::info!(agent, %slot, %started, "slot answered late");
                    }
                    self.watched.late += late;
                }
                if self.resolve(agent, IncidentKind::Missed).await? {
                    tracing::info!(agent, %slot, "incident resolved: missed (a run answered its slot)");
                }
                continue;
            }
            if self.known.paused_at(agent, slot) {
                tracing::debug!(agent, %slot, "slot skipped: the job was paused");
                continue;
            }
            self.watched.missed += self.tx.record_missed(agent, slot, now).await?;
            let summary = rules::missed_summary(slot, expectation.grace());
            if self.open(agent, IncidentKind::Missed, &summary).await? {
                tracing::warn!(agent, %slot, "incident opened: missed");
            }
        }
        Ok(())
    }

    /// Pauses the job `agent` when its latest `failures` runs (newest first in `recent`) all
    /// failed since it was last resumed, and opens its `paused` incident.
    async fn pause_after_failures(
        &mut self,
        agent: &str,
        failures: u32,
        recent: &[crate::store::RecentRun],
    ) -> Result<(), StoreError> {
        let Some(summary) = rules::failing(recent, failures) else {
            return Ok(());
        };
        // The oldest of those failures: a resume after it means an operator saw them.
        let Some(since) = recent
            .get((failures as usize).saturating_sub(1))
            .map(|r| r.started_at)
        else {
            return Ok(());
        };
        if self.known.resumed_after(agent, since) {
            return Ok(());
        }
        self.tx
            .pause_after_failures_of(agent, failures, self.now)
            .await?;
        self.known
            .paused
            .entry(agent.to_owned())
            .or_default()
            .push((self.now, None));
        let summary = format!("paused itself: {summary}; resume it to run it again");
        if self.open(agent, IncidentKind::Paused, &summary).await? {
            tracing::warn!(
                agent,
                failures,
                "job paused itself after failed runs in a row"
            );
        }
        Ok(())
    }

    /// Resolves the `paused` incident of each job no longer paused (resumed by hand).
    async fn resolve_resumed(&mut self) -> Result<(), StoreError> {
        let paused: Vec<String> = self
            .known
            .open
            .iter()
            .filter(|(_, kind)| *kind == IncidentKind::Paused)
            .map(|(agent, _)| agent.clone())
            .collect();
        for agent in paused {
            if !self.known.paused_at(&agent, self.now)
                && self.resolve(&agent, IncidentKind::Paused).await?
            {
                tracing::info!(agent, "incident resolved: paused (the job was resumed)");
            }
        }
        Ok(())
    }

    /// `stale` opened or resolved (`rules::staleness`); returns when it would go stale.
    async fn judge_staleness(
        &mut self,
        expectation: &ExpectationRow,
        period: Option<TimeDelta>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let agent = expectation.agent_name.as_str();
        let staleness = rules::staleness(
            self.now,
            self.known.last_success(agent),
            expectation.created_at,
            period,
            expectation.grace(),
            self.rules.stale_periods,
        );
        match staleness {
            Staleness::Unknown => Ok(None),
            // A paused job runs nothing on purpose: not stale while paused.
            Staleness::Stale(_) if self.known.paused_at(agent, self.now) => Ok(None),
            Staleness::Stale(summary) => {
                if self.open(agent, IncidentKind::Stale, &summary).await? {
                    tracing::warn!(agent, "incident opened: stale");
                }
                // Open until a success, which a pass sees as a change of the agent's summaries.
                Ok(None)
            }
            Staleness::Fresh(stale_at) => {
                if self.resolve(agent, IncidentKind::Stale).await? {
                    tracing::info!(agent, "incident resolved: stale (a successful run)");
                }
                Ok(Some(stale_at))
            }
        }
    }

    /// `failing` and `slow` from each changed agent's latest run, read from the daily summaries
    /// of the last two days (an agent with no run since has not changed); a success resolves
    /// `failing` and `overdue`. Moves the summaries' cursor on.
    async fn judge_latest_runs(
        &mut self,
        changes: SummaryChanges,
        changed: &HashSet<String>,
    ) -> Result<(), StoreError> {
        let SummaryChanges {
            rows, seen_until, ..
        } = changes;
        if let Some(newest) = rows.iter().map(|r| r.updated_at).max() {
            let until = newest - CURSOR_MARGIN;
            if seen_until.is_none_or(|seen| until > seen) {
                self.tx.set_summaries_cursor(until).await?;
            }
        }
        let mut latest: HashMap<String, SummaryChange> = HashMap::new();
        for row in rows.into_iter().filter(|r| changed.contains(&r.agent_name)) {
            match latest.get(&row.agent_name) {
                Some(seen) if seen.day >= row.day => {}
                _ => {
                    latest.insert(row.agent_name.clone(), row);
                }
            }
        }
        let mut agents: Vec<&SummaryChange> = latest.values().collect();
        agents.sort_by(|a, b| a.agent_name.cmp(&b.agent_name));
        for row in agents {
            self.judge_latest_run(row).await?;
        }
        Ok(())
    }

    async fn judge_latest_run(&mut self, row: &SummaryChange) -> Result<(), StoreError> {
        let agent = row.agent_name.as_str();
        // The runs are read only when they can tell something: a run today as long as the
        // floor of `slow`, or such an incident to resolve; a failure with `failing` not open.
        let slow_possible = row
            .max_duration_ms
            .is_some_and(|ms| ms >= self.rules.slow_min_ms())
            || self.known.is_open(agent, IncidentKind::Slow);
        let failed = row.last_status.as_deref() == Some(RunStatus::Failed.as_str());
        // A job that pauses itself after failures, failing and not paused: its runs tell.
        let pause_after = self
            .known
            .pause_after
            .get(agent)
            .copied()
            .filter(|_| failed && !self.known.paused_at(agent, self.now));
        let recent = if slow_possible
            || (failed && !self.known.is_open(agent, IncidentKind::Failing))
            || pause_after.is_some()
        {
            let wanted = Ord::max(self.rules.recent_runs(), pause_after.map_or(0, u64::from));
            self.tx.recent_runs(agent, wanted).await?
        } else {
            Vec::new()
        };
        if let Some(failures) = pause_after {
            self.pause_after_failures(agent, failures, &recent).await?;
        }
        if slow_possible {
            match rules::slowness(&recent, &self.rules) {
                Slowness::Unknown => {}
                Slowness::Slow {
                    summary,
                    took_ms,
                    median_ms,
                } => {
                    if self.open(agent, IncidentKind::Slow, &summary).await? {
                        tracing::warn!(agent, took_ms, median_ms, "incident opened: slow");
                    }
                }
                Slowness::Usual => {
                    if self.resolve(agent, IncidentKind::Slow).await? {
                        tracing::info!(agent, "incident resolved: slow (a run of usual length)");
                    }
                }
            }
        }
        match row.last_status.as_deref() {
            Some(status) if status == RunStatus::Success.as_str() => {
                for kind in [IncidentKind::Failing, IncidentKind::Overdue] {
                    if self.resolve(agent, kind).await? {
                        tracing::info!(
                            agent,
                            kind = kind.as_str(),
                            "incident resolved (a successful run)"
                        );
                    }
                }
            }
            Some(status) if status == RunStatus::Failed.as_str() => {
                if let Some(summary) = rules::failing(&recent, self.rules.failing_after)
                    && self.open(agent, IncidentKind::Failing, &summary).await?
                {
                    tracing::warn!(agent, last_run_at = ?row.last_run_at, "incident opened: failing");
                }
            }
            _ => {}
        }
        Ok(())
    }
}
