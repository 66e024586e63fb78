//! The watcher's pass: expected slots judged against the runs stored, missed slots recorded,
//! incidents opened and resolved. One pass at a time in a deployment (on PostgreSQL a
//! transaction-scoped advisory lock; SQLite is one process), everything in one transaction:
//! the state is in the database, so a restart or another replica carries on where the last
//! pass committed, and never records a slot or opens an incident twice.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use agent_sdk::wire::{IncidentKind, RunStatus};
use chrono::{DateTime, NaiveDate, SecondsFormat, SubsecRound, TimeDelta, Utc};
use sea_query::{Cond, Expr, ExprTrait, OnConflict, Order, Query, SelectStatement};

use super::expect::{
    ExpectationRow, LastTimes, expectation_columns, last_times, open_incident, open_incidents,
    resolve_incident,
};
use super::memo::Memo;
use super::schema::{
    AgentDailySummaries, AgentExpectations, AgentRuns, LateSlots, MissedSlots, WatcherState,
};
use super::tx::Tx;
use super::{Store, StoreError};
use crate::domain::{Cadence, human};

/// The advisory lock the replicas take in turn for a pass ("watcher" in ASCII).
pub const WATCH_LOCK: i64 = 0x0077_6174_6368_6572;

/// Most slots of all expectations judged in a pass, so that a pass after a long silence stays
/// a short transaction under a second with its rests (store/tx.rs; bench/watcher.sh, two
/// cores: 1 500 slots were 0.7 s of work unpaced; 200 slots, paced, 0.4-0.75 s); the
/// expectations left are still due, and the service runs the next pass soon
/// ([`Watched::more`]).
pub const SLOTS_PER_PASS_IN_ALL: usize = 200;

/// Up to this many agents are named in a pass's queries; past it, the queries read every
/// agent's rows (or take the changed ones as a subquery).
const KNOWN_BY_NAME: usize = 500;

/// Most runs of one period expectation read in a pass; the next pass reads on from there.
const RUNS_PER_PASS: usize = 4_000;

/// How early before its slot a run may start and still answer it (clocks differ).
const EARLY: TimeDelta = TimeDelta::seconds(60);

/// How many of an agent's latest successful runs `slow` compares a run with.
const SLOW_HISTORY: u64 = 20;
/// `slow` needs at least this many of them.
const SLOW_MIN_HISTORY: usize = 5;

/// What a pass is told.
#[derive(Debug, Clone, Copy)]
pub struct WatchRules {
    /// `failing` opens when this many of an agent's latest runs failed (1: every failure).
    pub failing_after: u32,
    /// `stale` opens when an expected agent has had no successful run for this many periods.
    pub stale_periods: u32,
    /// `slow` opens when a run takes more than this many times the median of the agent's
    /// last 20 successful runs...
    pub slow_factor: u32,
    /// ...and at least this long.
    pub slow_min: Duration,
    /// A slot is late when the run that answers it started more than this after it (and
    /// within the grace: later, the slot is missed).
    pub late_after: Duration,
    /// How often the collector runs a pass (with the overdue check, alerts and retention).
    pub every: Duration,
}

impl Default for WatchRules {
    fn default() -> Self {
        Self {
            failing_after: 1,
            stale_periods: 3,
            slow_factor: 3,
            slow_min: Duration::from_secs(60),
            late_after: Duration::from_secs(60),
            every: Duration::from_secs(10),
        }
    }
}

impl WatchRules {
    fn slow_min_ms(&self) -> i64 {
        i64::try_from(self.slow_min.as_millis()).unwrap_or(i64::MAX)
    }
}

/// What a pass did; `None` from [`Store::watch`] when another replica is doing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watched {
    pub missed: usize,
    pub late: usize,
    pub opened: usize,
    pub resolved: usize,
    /// The pass stopped at its most slots ([`SLOTS_PER_PASS_IN_ALL`]): more may be due now.
    pub more: bool,
}

#[derive(sqlx::FromRow)]
struct LastStatus {
    agent_name: String,
    day: NaiveDate,
    last_status: Option<String>,
    last_run_at: Option<DateTime<Utc>>,
    max_duration_ms: Option<i64>,
    updated_at: DateTime<Utc>,
}

/// `watcher_state`'s row for the summaries judged.
const SUMMARIES_CURSOR: &str = "summaries";
/// How far back of the newest summary change a pass starts the next one (longer than any
/// write transaction: statements are cancelled after 15 s).
const CURSOR_MARGIN: TimeDelta = TimeDelta::seconds(60);

#[derive(sqlx::FromRow)]
struct RecentRun {
    status: String,
    error_message: Option<String>,
    duration_ms: Option<i64>,
    started_at: DateTime<Utc>,
}

impl Store {
    /// One pass of the watcher at `now`.
    pub async fn watch(
        &self,
        now: DateTime<Utc>,
        rules: WatchRules,
    ) -> Result<Option<Watched>, StoreError> {
        // Microseconds, as both backends keep them.
        let now = now.trunc_subsecs(6);
        // Background work: paced, so that passes however frequent leave ingest its cores.
        let mut tx = Tx::begin_paced(self).await?;
        if !tx.try_lock(WATCH_LOCK).await? {
            return Ok(None);
        }
        let mut watched = Watched::default();
        // The open incidents before what they are judged against: the overdue check (its own
        // lock, so maybe another replica's, running now) opens `overdue` and writes its run's
        // summaries in one commit. Read after the summaries, an incident opened in between
        // would meet the latest status from before it, a success, and be resolved at once.
        let open = Known::read_open(&mut tx).await?;
        let changes = Changes::read(&mut tx, &self.judged, now).await?;
        // Only the expectations with something to judge: due by now (new or changed, a slot's
        // grace ended, or it would go stale), or of an agent that ran since the last pass.
        let mut select = Query::select();
        select
            .columns(expectation_columns())
            .column(AgentExpectations::NextCheckAt)
            .from(AgentExpectations::Table)
            .cond_where(
                Cond::any()
                    .add(Expr::col(AgentExpectations::NextCheckAt).lte(now))
                    .add(changes.agent_is_changed(AgentExpectations::AgentName)),
            )
            .order_by(AgentExpectations::Name, Order::Asc);
        let expectations: Vec<ExpectationRow> = tx.fetch(&select).await?;
        // The agents this pass judges: those expected now, and those that ran.
        let mut agents: Vec<&str> = expectations
            .iter()
            .map(|e| e.agent_name.as_str())
            .chain(changes.changed.iter().map(String::as_str))
            .collect();
        agents.sort_unstable();
        agents.dedup();
        // A long list of names costs more than reading every agent's (and meets the limit on
        // bound parameters): past KNOWN_BY_NAME, all.
        let agents = (agents.len() <= KNOWN_BY_NAME).then_some(agents.as_slice());
        let mut known = Known::read(&mut tx, agents, open).await?;
        let mut budget = SLOTS_PER_PASS_IN_ALL;
        for expectation in &expectations {
            if budget == 0 {
                break;
            }
            let cadence = match expectation.cadence(&self.crons) {
                Ok(cadence) => cadence,
                Err(err) => {
                    tracing::warn!(expectation = %expectation.name, error = %err, "an expectation that cannot be read is skipped");
                    continue;
                }
            };
            let mut pass = PassAt {
                now,
                rules,
                watched: &mut watched,
            };
            let slots = judge_slots(
                &mut tx,
                &mut known,
                expectation,
                &cadence,
                budget,
                &mut pass,
            )
            .await?;
            budget -= slots.judged;
            let period = match &cadence {
                Cadence::Every(period) => Some(*period),
                // A cron's: from its first slot not yet judged to the slot after.
                Cadence::Cron(schedule) => slots
                    .pending
                    .and_then(|slot| schedule.next_after(slot).map(|next| next - slot)),
            };
            let stale_at =
                judge_staleness(&mut tx, &mut known, expectation, period, &mut pass).await?;
            let next_check = [slots.check_at, stale_at].into_iter().flatten().min();
            if slots.checked > expectation.checked_until || next_check != expectation.next_check_at
            {
                let mut update = Query::update();
                update
                    .table(AgentExpectations::Table)
                    .values([
                        (
                            AgentExpectations::CheckedUntil,
                            Ord::max(slots.checked, expectation.checked_until).into(),
                        ),
                        (AgentExpectations::NextCheckAt, next_check.into()),
                    ])
                    .and_where(Expr::col(AgentExpectations::Source).eq(expectation.source.as_str()))
                    .and_where(Expr::col(AgentExpectations::Name).eq(expectation.name.as_str()));
                tx.execute(&update).await?;
            }
        }
        let judged: Vec<_> = changes
            .rows
            .iter()
            .filter(|r| changes.changed.contains(&r.agent_name))
            .map(|r| ((r.agent_name.clone(), r.day), r.updated_at))
            .collect();
        watched.more = budget == 0;
        judge_latest_runs(&mut tx, &mut known, changes, now, rules, &mut watched).await?;
        tx.commit().await?;
        // Remembered once committed.
        self.judged.insert_all(judged);
        Ok(Some(watched))
    }
}

/// What a pass reads once instead of once per expectation: each agent's latest run and latest
/// success (from the daily summaries), and the open incidents, kept up to date as the pass
/// opens and resolves them.
struct Known {
    /// Per agent: (latest run, latest success).
    last: HashMap<String, LastRun>,
    open: HashSet<(String, IncidentKind)>,
}

type LastRun = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

impl Known {
    /// Every open incident, (agent, kind): a pass's first read ([`Store::watch`] says why).
    async fn read_open(tx: &mut Tx) -> Result<HashSet<(String, IncidentKind)>, StoreError> {
        Ok(tx
            .fetch::<(String, String), _>(&open_incidents())
            .await?
            .into_iter()
            .filter_map(|(agent, kind)| IncidentKind::parse(&kind).map(|k| (agent, k)))
            .collect())
    }

    /// The latest runs of `agents` (or of all), with the `open` incidents read first.
    async fn read(
        tx: &mut Tx,
        agents: Option<&[&str]>,
        open: HashSet<(String, IncidentKind)>,
    ) -> Result<Self, StoreError> {
        let last = tx
            .fetch::<LastTimes, _>(&last_times(agents))
            .await?
            .into_iter()
            .map(|r| (r.agent_name, (r.last_run_at, r.last_success_at)))
            .collect();
        Ok(Self { last, open })
    }

    fn is_open(&self, agent: &str, kind: IncidentKind) -> bool {
        self.open.contains(&(agent.to_owned(), kind))
    }

    fn last_run(&self, agent: &str) -> Option<DateTime<Utc>> {
        self.last.get(agent).and_then(|(run, _)| *run)
    }

    fn last_success(&self, agent: &str) -> Option<DateTime<Utc>> {
        self.last.get(agent).and_then(|(_, success)| *success)
    }

    /// Opens `agent`'s incident of `kind` unless this pass knows it open: `true` when opened.
    async fn open(
        &mut self,
        tx: &mut Tx,
        agent: &str,
        kind: IncidentKind,
        now: DateTime<Utc>,
        summary: &str,
    ) -> Result<bool, StoreError> {
        if self.is_open(agent, kind) {
            return Ok(false);
        }
        let opened = open_incident(tx, agent, kind, now, summary).await?;
        self.open.insert((agent.to_owned(), kind));
        Ok(opened)
    }

    /// Resolves `agent`'s incident of `kind` if this pass knows it open: `true` when resolved.
    async fn resolve(
        &mut self,
        tx: &mut Tx,
        agent: &str,
        kind: IncidentKind,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if !self.open.remove(&(agent.to_owned(), kind)) {
            return Ok(false);
        }
        resolve_incident(tx, agent, kind, now).await
    }
}

/// A pass's time, rules and tally, as the judging of an expectation takes them.
struct PassAt<'a> {
    now: DateTime<Utc>,
    rules: WatchRules,
    watched: &'a mut Watched,
}

/// What [`judge_slots`] leaves for the next passes.
struct SlotsJudged {
    /// The expectation's progress (`checked_until`).
    checked: DateTime<Utc>,
    /// A cron's first slot not yet judged.
    pending: Option<DateTime<Utc>>,
    /// When a slot is next due to be judged, if no run arrives before.
    check_at: Option<DateTime<Utc>>,
    /// How many slots were.
    judged: usize,
}

/// Judges the slots of `expectation` that are past their grace at `now`: each on time, late
/// (answered by a run that started more than `rules.late_after` after it) or missed.
async fn judge_slots(
    tx: &mut Tx,
    known: &mut Known,
    expectation: &ExpectationRow,
    cadence: &Cadence,
    budget: usize,
    pass: &mut PassAt<'_>,
) -> Result<SlotsJudged, StoreError> {
    let (now, rules, watched) = (pass.now, pass.rules, &mut *pass.watched);
    let agent = expectation.agent_name.as_str();
    let grace = expectation.grace();
    let mut checked = expectation.checked_until;
    // The first slot left for a later pass (a cron's; `judge_staleness` reads its period), and
    // when a pass has to judge again without a run arriving.
    let mut pending = None;
    let mut check_at = None;
    // Each slot judged, in order, with the start of the run that answered it.
    let mut judged: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = Vec::new();
    match cadence {
        Cadence::Cron(_) => {
            let mut slots = Vec::new();
            let mut after = checked;
            while let Some(slot) = cadence.next_after(after) {
                if slot + grace > now || slots.len() == budget {
                    pending = Some(slot);
                    check_at = Some(Ord::max(slot + grace, now));
                    break;
                }
                slots.push(slot);
                after = slot;
            }
            let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
                return Ok(SlotsJudged {
                    checked,
                    pending,
                    check_at,
                    judged: 0,
                });
            };
            // No run since the first slot's window opened (the summaries say): no query.
            let runs = match known.last_run(agent) {
                Some(latest) if latest >= *first - EARLY => {
                    run_starts(tx, agent, *first - EARLY, *last + grace, None).await?
                }
                _ => Vec::new(),
            };
            for slot in slots {
                let from = runs.partition_point(|at| *at < slot - EARLY);
                let answer = runs.get(from).copied().filter(|at| *at <= slot + grace);
                judged.push((slot, answer));
            }
        }
        Cadence::Every(_) => {
            // A period's slot is due a period after the run that answered the previous one (or
            // the slot last missed). Each run since, in order, answers the first slot whose
            // grace it falls in; slots whose grace passed before the next run are missed, even
            // when no pass saw them pass (the collector was down). The runs are read only when
            // the summaries show one since, so an idle expectation costs no query.
            let mut runs = match known.last_run(agent) {
                Some(last) if last > checked => {
                    run_starts(tx, agent, checked, last, Some(RUNS_PER_PASS)).await?
                }
                _ => Vec::new(),
            };
            // With the runs cut short, the slots after the last one read wait for the next pass.
            let cut_short = runs.len() == RUNS_PER_PASS;
            // The summaries' latest run counts even when its row is gone (retention).
            if let Some(last) = known.last_run(agent)
                && !cut_short
                && runs.last().is_none_or(|at| *at < last)
            {
                runs.push(last);
            }
            let mut runs = runs.into_iter().filter(|at| *at > checked).peekable();
            let mut anchor = checked;
            while judged.len() < budget {
                let Some(due) = cadence.next_after(anchor) else {
                    break;
                };
                match runs.peek().copied() {
                    Some(at) if at <= due + grace => {
                        judged.push((due, Some(at)));
                        anchor = at;
                        runs.next();
                    }
                    None if cut_short => {
                        check_at = Some(now);
                        break;
                    }
                    _ if due + grace <= now => {
                        judged.push((due, None));
                        anchor = due;
                    }
                    _ => {
                        check_at = Some(due + grace);
                        break;
                    }
                }
            }
            if judged.len() == budget {
                check_at = Some(now);
            }
        }
    }
    let late_after = TimeDelta::from_std(rules.late_after).unwrap_or(TimeDelta::MAX);
    let count = judged.len();
    for (slot, answer) in judged {
        if let Some(started) = answer {
            // A cron's progress is its last slot judged; a period's, the run that reset it.
            checked = match cadence {
                Cadence::Cron(_) => slot,
                Cadence::Every(_) => started,
            };
            if started > slot + late_after {
                record_late(tx, agent, slot, started, now, watched).await?;
            }
            if known.resolve(tx, agent, IncidentKind::Missed, now).await? {
                watched.resolved += 1;
                tracing::info!(agent, %slot, "incident resolved: missed (a run answered its slot)");
            }
            continue;
        }
        checked = slot;
        record_missed(tx, agent, slot, now, watched).await?;
        let summary = format!(
            "no run for the slot at {} within its grace of {}",
            rfc3339(slot),
            human(grace)
        );
        if known
            .open(tx, agent, IncidentKind::Missed, now, &summary)
            .await?
        {
            watched.opened += 1;
            tracing::warn!(agent, %slot, "incident opened: missed");
        }
    }
    Ok(SlotsJudged {
        checked,
        pending,
        check_at,
        judged: count,
    })
}

/// `stale`: no successful run of an expected agent for `rules.stale_periods` periods (`None`:
/// a cron that no longer fires) and its grace, counted from its last success or, without one,
/// from when it was first expected. Returns when it would go stale.
async fn judge_staleness(
    tx: &mut Tx,
    known: &mut Known,
    expectation: &ExpectationRow,
    period: Option<TimeDelta>,
    pass: &mut PassAt<'_>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let (now, rules, watched) = (pass.now, pass.rules, &mut *pass.watched);
    let agent = expectation.agent_name.as_str();
    let Some(period) = period else {
        return Ok(None);
    };
    let last_success = known.last_success(agent);
    let since = last_success.unwrap_or(expectation.created_at);
    let allowed =
        period * i32::try_from(rules.stale_periods).unwrap_or(i32::MAX) + expectation.grace();
    if now - since > allowed {
        let summary = match last_success {
            Some(at) => format!(
                "no successful run since {} ({} periods of {})",
                rfc3339(at),
                rules.stale_periods,
                human(period)
            ),
            None => format!(
                "no successful run since it was first expected at {} ({} periods of {})",
                rfc3339(since),
                rules.stale_periods,
                human(period)
            ),
        };
        if known
            .open(tx, agent, IncidentKind::Stale, now, &summary)
            .await?
        {
            watched.opened += 1;
            tracing::warn!(agent, "incident opened: stale");
        }
        // Open until a success, which a pass sees as a change of the agent's summaries.
        return Ok(None);
    }
    if known.resolve(tx, agent, IncidentKind::Stale, now).await? {
        watched.resolved += 1;
        tracing::info!(agent, "incident resolved: stale (a successful run)");
    }
    Ok(Some(since + allowed + TimeDelta::microseconds(1)))
}

/// The `started_at` of `agent`'s runs from `from` to `to`, in order.
async fn run_starts(
    tx: &mut Tx,
    agent: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: Option<usize>,
) -> Result<Vec<DateTime<Utc>>, StoreError> {
    let mut select = Query::select();
    select
        .column(AgentRuns::StartedAt)
        .from(AgentRuns::Table)
        .and_where(Expr::col(AgentRuns::AgentName).eq(agent))
        .and_where(Expr::col(AgentRuns::StartedAt).gte(from))
        .and_where(Expr::col(AgentRuns::StartedAt).lte(to))
        .order_by(AgentRuns::StartedAt, Order::Asc);
    if let Some(limit) = limit {
        select.limit(limit as u64);
    }
    let rows: Vec<(DateTime<Utc>,)> = tx.fetch(&select).await?;
    Ok(rows.into_iter().map(|(at,)| at).collect())
}

async fn record_late(
    tx: &mut Tx,
    agent: &str,
    slot: DateTime<Utc>,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
    watched: &mut Watched,
) -> Result<(), StoreError> {
    let mut insert = Query::insert();
    insert
        .into_table(LateSlots::Table)
        .columns([
            LateSlots::AgentName,
            LateSlots::Slot,
            LateSlots::StartedAt,
            LateSlots::DetectedAt,
        ])
        .values_panic([agent.into(), slot.into(), started.into(), now.into()])
        .on_conflict(
            OnConflict::columns([LateSlots::AgentName, LateSlots::Slot])
                .do_nothing()
                .to_owned(),
        );
    let inserted = usize::try_from(tx.execute(&insert).await?).unwrap_or(0);
    if inserted > 0 {
        tracing::info!(agent, %slot, %started, "slot answered late");
    }
    watched.late += inserted;
    Ok(())
}

async fn record_missed(
    tx: &mut Tx,
    agent: &str,
    slot: DateTime<Utc>,
    now: DateTime<Utc>,
    watched: &mut Watched,
) -> Result<(), StoreError> {
    let mut insert = Query::insert();
    insert
        .into_table(MissedSlots::Table)
        .columns([
            MissedSlots::AgentName,
            MissedSlots::Slot,
            MissedSlots::DetectedAt,
        ])
        .values_panic([agent.into(), slot.into(), now.into()])
        .on_conflict(
            OnConflict::columns([MissedSlots::AgentName, MissedSlots::Slot])
                .do_nothing()
                .to_owned(),
        );
    watched.missed += usize::try_from(tx.execute(&insert).await?).unwrap_or(0);
    Ok(())
}

/// The summaries this process's passes judged, per (agent, day) the `updated_at` judged: the
/// cursor's margin brings them back for a minute, and a row unchanged since is not judged
/// again (a restart forgets, and judges them once more: judging is idempotent).
pub(super) type JudgedSummaries = Memo<(String, NaiveDate), DateTime<Utc>>;

/// The agents whose summaries changed since the last pass (less a margin for transactions that
/// committed after it read): only they can have a new latest run to judge.
struct Changes {
    /// The summaries of the last two days (UTC) of the agents that changed.
    rows: Vec<LastStatus>,
    changed: HashSet<String>,
    /// The cursor as the last pass left it.
    seen_until: Option<DateTime<Utc>>,
    /// The names of `changed`, as a subquery.
    agents_query: SelectStatement,
}

impl Changes {
    /// `column` names an agent that changed: a list of names while short (an index can
    /// serve each), else the subquery.
    fn agent_is_changed(&self, column: AgentExpectations) -> sea_query::SimpleExpr {
        if self.changed.len() <= KNOWN_BY_NAME {
            Expr::col(column).is_in(self.changed.iter().map(String::as_str))
        } else {
            Expr::col(column).in_subquery(self.agents_query.clone())
        }
    }

    async fn read(
        tx: &mut Tx,
        judged: &JudgedSummaries,
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let since = (now - TimeDelta::days(1)).date_naive();
        let cursor = Query::select()
            .column(WatcherState::At)
            .from(WatcherState::Table)
            .and_where(Expr::col(WatcherState::Name).eq(SUMMARIES_CURSOR))
            .to_owned();
        let seen_until: Option<DateTime<Utc>> = tx
            .fetch::<(DateTime<Utc>,), _>(&cursor)
            .await?
            .pop()
            .map(|(at,)| at);
        let mut select = Query::select();
        select
            .columns([
                AgentDailySummaries::AgentName,
                AgentDailySummaries::Day,
                AgentDailySummaries::LastStatus,
                AgentDailySummaries::LastRunAt,
                AgentDailySummaries::MaxDurationMs,
                AgentDailySummaries::UpdatedAt,
            ])
            .from(AgentDailySummaries::Table)
            .and_where(Expr::col(AgentDailySummaries::Day).gte(since));
        let agents_query = select
            .clone()
            .clear_selects()
            .column(AgentDailySummaries::AgentName)
            .and_where_option(
                seen_until.map(|seen| Expr::col(AgentDailySummaries::UpdatedAt).gt(seen)),
            )
            .to_owned();
        // Both days of each agent that changed: its latest run may be on a day that did not.
        select
            .and_where(Expr::col(AgentDailySummaries::AgentName).in_subquery(agents_query.clone()));
        let rows: Vec<LastStatus> = tx.fetch(&select).await?;
        let changed: HashSet<String> = rows
            .iter()
            .filter(|r| {
                seen_until.is_none_or(|seen| r.updated_at > seen)
                    && judged.get(&(r.agent_name.clone(), r.day)) != Some(r.updated_at)
            })
            .map(|r| r.agent_name.clone())
            .collect();
        Ok(Self {
            rows,
            changed,
            seen_until,
            agents_query,
        })
    }
}

/// `failing` from each agent's latest run, read from the daily summaries of the last two days
/// (an agent with no run since has not changed); a success resolves `failing` and `overdue`.
async fn judge_latest_runs(
    tx: &mut Tx,
    known: &mut Known,
    changes: Changes,
    now: DateTime<Utc>,
    rules: WatchRules,
    watched: &mut Watched,
) -> Result<(), StoreError> {
    let Changes {
        rows,
        changed,
        seen_until,
        ..
    } = changes;
    if let Some(newest) = rows.iter().map(|r| r.updated_at).max() {
        let until = newest - CURSOR_MARGIN;
        if seen_until.is_none_or(|seen| until > seen) {
            let mut upsert = Query::insert();
            upsert
                .into_table(WatcherState::Table)
                .columns([WatcherState::Name, WatcherState::At])
                .values_panic([SUMMARIES_CURSOR.into(), until.into()])
                .on_conflict(
                    OnConflict::column(WatcherState::Name)
                        .update_column(WatcherState::At)
                        .to_owned(),
                );
            tx.execute(&upsert).await?;
        }
    }
    let mut latest: HashMap<String, LastStatus> = HashMap::new();
    for row in rows.into_iter().filter(|r| changed.contains(&r.agent_name)) {
        match latest.get(&row.agent_name) {
            Some(seen) if seen.day >= row.day => {}
            _ => {
                latest.insert(row.agent_name.clone(), row);
            }
        }
    }
    let mut agents: Vec<&LastStatus> = latest.values().collect();
    agents.sort_by(|a, b| a.agent_name.cmp(&b.agent_name));
    for row in agents {
        let agent = row.agent_name.as_str();
        // The runs are read only when they can tell something: a run today as long as the
        // floor of `slow`, or such an incident to resolve; a failure with `failing` not open.
        let slow_possible = row
            .max_duration_ms
            .is_some_and(|ms| ms >= rules.slow_min_ms())
            || known.is_open(agent, IncidentKind::Slow);
        let failed = row.last_status.as_deref() == Some(RunStatus::Failed.as_str());
        let recent = if slow_possible || (failed && !known.is_open(agent, IncidentKind::Failing)) {
            recent_runs(tx, agent, rules.failing_after).await?
        } else {
            Vec::new()
        };
        if slow_possible {
            judge_slowness(tx, known, agent, &recent, now, rules, watched).await?;
        }
        match row.last_status.as_deref() {
            Some(status) if status == RunStatus::Success.as_str() => {
                for kind in [IncidentKind::Failing, IncidentKind::Overdue] {
                    if known.resolve(tx, agent, kind, now).await? {
                        watched.resolved += 1;
                        tracing::info!(
                            agent,
                            kind = kind.as_str(),
                            "incident resolved (a successful run)"
                        );
                    }
                }
            }
            Some(status) if status == RunStatus::Failed.as_str() => {
                let last_n = &recent[..recent.len().min(rules.failing_after as usize)];
                let all_failed = last_n.len() == rules.failing_after as usize
                    && last_n
                        .iter()
                        .all(|r| r.status == RunStatus::Failed.as_str());
                let Some(last) = recent.first().filter(|_| all_failed) else {
                    continue;
                };
                let error = last
                    .error_message
                    .as_deref()
                    .and_then(|e| e.lines().find(|l| !l.trim().is_empty()))
                    .unwrap_or("no error message");
                let summary = if rules.failing_after == 1 {
                    format!("the run at {} failed: {error}", rfc3339(last.started_at))
                } else {
                    format!(
                        "the last {} runs failed, the latest at {}: {error}",
                        rules.failing_after,
                        rfc3339(last.started_at)
                    )
                };
                if known
                    .open(tx, agent, IncidentKind::Failing, now, &summary)
                    .await?
                {
                    watched.opened += 1;
                    tracing::warn!(agent, last_run_at = ?row.last_run_at, "incident opened: failing");
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `slow`: `agent`'s latest finished run took more than `rules.slow_factor` times the median
/// of its previous successful runs (at least five of the last twenty) and at least
/// `rules.slow_min`; resolved by a latest run that is not.
async fn judge_slowness(
    tx: &mut Tx,
    known: &mut Known,
    agent: &str,
    runs: &[RecentRun],
    now: DateTime<Utc>,
    rules: WatchRules,
    watched: &mut Watched,
) -> Result<(), StoreError> {
    let Some((latest, earlier)) = runs.split_first() else {
        return Ok(());
    };
    let mut history: Vec<i64> = earlier
        .iter()
        .filter(|r| r.status == RunStatus::Success.as_str())
        .filter_map(|r| r.duration_ms)
        .take(SLOW_HISTORY as usize)
        .collect();
    if history.len() < SLOW_MIN_HISTORY {
        return Ok(());
    }
    history.sort_unstable();
    let median = history[history.len() / 2];
    let took = latest.duration_ms.unwrap_or(0);
    let slow =
        took > median.saturating_mul(i64::from(rules.slow_factor)) && took >= rules.slow_min_ms();
    if slow {
        let summary = format!(
            "the run at {} took {}, more than {}x the median {} of its last {} successful runs",
            rfc3339(latest.started_at),
            human(TimeDelta::milliseconds(took)),
            rules.slow_factor,
            human(TimeDelta::milliseconds(median)),
            history.len()
        );
        if known
            .open(tx, agent, IncidentKind::Slow, now, &summary)
            .await?
        {
            watched.opened += 1;
            tracing::warn!(
                agent,
                took_ms = took,
                median_ms = median,
                "incident opened: slow"
            );
        }
    } else if known.resolve(tx, agent, IncidentKind::Slow, now).await? {
        watched.resolved += 1;
        tracing::info!(agent, "incident resolved: slow (a run of usual length)");
    }
    Ok(())
}

/// `agent`'s latest finished runs, newest first, as many as `failing` (its latest
/// `failing_after`) and `slow` (twice its history, for twenty successes) read; runs closed as
/// overdue are left out (they are `overdue` incidents of their own).
async fn recent_runs(
    tx: &mut Tx,
    agent: &str,
    failing_after: u32,
) -> Result<Vec<RecentRun>, StoreError> {
    let mut select = Query::select();
    select
        .columns([
            AgentRuns::Status,
            AgentRuns::ErrorMessage,
            AgentRuns::DurationMs,
            AgentRuns::StartedAt,
        ])
        .from(AgentRuns::Table)
        .and_where(Expr::col(AgentRuns::AgentName).eq(agent))
        .and_where(Expr::col(AgentRuns::Status).ne(RunStatus::Running.as_str()))
        .and_where(Expr::col(AgentRuns::OverdueAt).is_null())
        .order_by(AgentRuns::StartedAt, Order::Desc)
        .order_by(AgentRuns::Id, Order::Desc)
        .limit(Ord::max(u64::from(failing_after), SLOW_HISTORY * 2));
    tx.fetch(&select).await
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
