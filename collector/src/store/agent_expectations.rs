//! Expectations: declared over the API or published by schedulers, listed with their slots,
//! and the watcher's progress through them.

use std::collections::{HashMap, HashSet};

use agent_sdk::wire::{Expectation, ExpectationSource};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use sea_query::{Cond, Expr, ExprTrait, Order, Query};
use sqlx::FromRow;

use super::tables::AgentExpectations;
use super::{AgentAccess, Store, StoreError, SummaryChanges, Tx};
use crate::domain::{AgentName, Cadence, NewExpectation, human};
use crate::memo::Memo;

/// A scheduler's job, as its publication stores it: the expectation, and what `GET /jobs`
/// shows besides.
#[derive(Debug, Clone)]
pub struct ScheduledExpectation {
    pub expectation: NewExpectation,
    pub timeout_seconds: Option<i64>,
    /// `latest` when `None`.
    pub catchup_window: Option<String>,
    pub jitter: Option<String>,
    pub pause_after_failures: Option<u32>,
}

/// A job's settings besides its expectation: catchup window, jitter, pause after failures.
type JobSettings = (Option<String>, Option<String>, Option<i64>);

#[derive(FromRow)]
struct JobSettingsRow {
    name: String,
    catchup_window: Option<String>,
    jitter: Option<String>,
    pause_after_failures: Option<i64>,
}

/// Writes each job's catchup window, jitter and pause after failures where they changed (a publication repeats
/// them; one read, and a write only for what differs).
async fn set_job_settings(tx: &mut Tx, jobs: &[ScheduledExpectation]) -> Result<(), StoreError> {
    let scheduler = ExpectationSource::Scheduler.as_str();
    let mut stored: HashMap<String, JobSettings> = HashMap::new();
    for names in jobs.chunks(500) {
        let rows: Vec<JobSettingsRow> = tx
            .fetch(
                Query::select()
                    .columns([
                        AgentExpectations::Name,
                        AgentExpectations::CatchupWindow,
                        AgentExpectations::Jitter,
                        AgentExpectations::PauseAfterFailures,
                    ])
                    .from(AgentExpectations::Table)
                    .and_where(Expr::col(AgentExpectations::Source).eq(scheduler))
                    .and_where(
                        Expr::col(AgentExpectations::Name)
                            .is_in(names.iter().map(|j| j.expectation.agent_name.as_str())),
                    ),
            )
            .await?;
        stored.extend(
            rows.into_iter()
                .map(|r| (r.name, (r.catchup_window, r.jitter, r.pause_after_failures))),
        );
    }
    for job in jobs {
        let name = job.expectation.agent_name.as_str();
        let wanted = (
            job.catchup_window.clone(),
            job.jitter.clone(),
            job.pause_after_failures.map(i64::from),
        );
        if stored.get(name) == Some(&wanted) {
            continue;
        }
        tx.execute(
            Query::update()
                .table(AgentExpectations::Table)
                .values([
                    (AgentExpectations::CatchupWindow, wanted.0.into()),
                    (AgentExpectations::Jitter, wanted.1.into()),
                    (AgentExpectations::PauseAfterFailures, wanted.2.into()),
                ])
                .and_where(Expr::col(AgentExpectations::Source).eq(scheduler))
                .and_where(Expr::col(AgentExpectations::Name).eq(name)),
        )
        .await?;
    }
    Ok(())
}

/// A stored expectation, as read back.
#[derive(Debug, Clone, FromRow)]
pub struct ExpectationRow {
    pub name: String,
    pub agent_name: String,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub every_seconds: Option<i64>,
    pub grace_seconds: i64,
    pub timeout_seconds: Option<i64>,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub checked_until: DateTime<Utc>,
    /// A scheduler's: who published it.
    pub publisher: Option<String>,
    /// Read by the watcher only (absent elsewhere).
    #[sqlx(default)]
    pub next_check_at: Option<DateTime<Utc>>,
}

/// Cron cadences parsed once per (expression, zone) and kept across the watcher's passes:
/// parsing 10 000 expressions was half of a pass's CPU (croner builds each field bit by bit).
pub(super) type Crons = Memo<(String, String), Cadence>;

pub(super) fn cron_cadence(crons: &Crons, cron: &str, timezone: &str) -> Result<Cadence, String> {
    let key = (cron.to_owned(), timezone.to_owned());
    if let Some(cadence) = crons.get(&key) {
        return Ok(cadence);
    }
    let cadence = Cadence::from_columns(Some(cron), Some(timezone), None)?;
    crons.insert_all(vec![(key, cadence.clone())]);
    Ok(cadence)
}

impl ExpectationRow {
    pub(super) fn cadence(&self, crons: &Crons) -> Result<Cadence, String> {
        match (&self.cron, &self.timezone) {
            (Some(cron), Some(timezone)) if self.every_seconds.is_none() => {
                cron_cadence(crons, cron, timezone)
            }
            _ => Cadence::from_columns(
                self.cron.as_deref(),
                self.timezone.as_deref(),
                self.every_seconds,
            ),
        }
    }

    pub fn grace(&self) -> TimeDelta {
        TimeDelta::seconds(self.grace_seconds)
    }

    /// The API's view at `now`, with the last and next slot: for a cron, the slots around
    /// `now`; for a period, the slot a period after the last one judged (`last_run`: the
    /// agent's latest run, when later).
    fn view(
        &self,
        crons: &Crons,
        now: DateTime<Utc>,
        last_run: Option<DateTime<Utc>>,
    ) -> Expectation {
        let cadence = self.cadence(crons).ok();
        let (last_slot, next_slot) = match &cadence {
            Some(Cadence::Cron(schedule)) => (
                schedule
                    .latest_at_or_before(now)
                    .filter(|slot| *slot >= self.created_at),
                schedule.next_after(now),
            ),
            Some(every @ Cadence::Every(_)) => {
                let anchor =
                    last_run.map_or(self.checked_until, |r| Ord::max(r, self.checked_until));
                (None, every.next_after(anchor))
            }
            None => (None, None),
        };
        Expectation {
            name: self.name.clone(),
            agent_name: self.agent_name.clone(),
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            every: cadence.as_ref().and_then(Cadence::every),
            grace: human(self.grace()),
            source: ExpectationSource::parse(&self.source).unwrap_or(ExpectationSource::Api),
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_slot,
            next_slot,
        }
    }
}

pub(super) fn expectation_columns() -> [AgentExpectations; 12] {
    [
        AgentExpectations::Name,
        AgentExpectations::AgentName,
        AgentExpectations::Cron,
        AgentExpectations::Timezone,
        AgentExpectations::EverySeconds,
        AgentExpectations::GraceSeconds,
        AgentExpectations::TimeoutSeconds,
        AgentExpectations::Source,
        AgentExpectations::CreatedAt,
        AgentExpectations::UpdatedAt,
        AgentExpectations::CheckedUntil,
        AgentExpectations::Publisher,
    ]
}

impl Store {
    /// Stores `expectation` under its agent's name at `now`: `true` when it is new. A changed
    /// cadence is judged from `now` on; the same one keeps its progress.
    pub async fn put_expectation(
        &self,
        expectation: &NewExpectation,
        now: DateTime<Utc>,
    ) -> Result<(Expectation, bool), StoreError> {
        // Microseconds, as both backends keep them.
        let now = now.trunc_subsecs(6);
        let mut tx = Tx::begin(self).await?;
        let created = upsert(&mut tx, expectation, None, None, now).await?;
        let select = select_expectations(expectation.source)
            .and_where(Expr::col(AgentExpectations::Name).eq(expectation.agent_name.as_str()))
            .to_owned();
        let stored: Option<ExpectationRow> = tx.fetch(&select).await?.pop();
        tx.commit().await?;
        let stored = stored.ok_or_else(|| {
            StoreError::internal("storing an expectation", "the row is gone after its write")
        })?;
        Ok((stored.view(&self.crons, now, None), created))
    }

    /// Replaces the expectations `publisher` published with `jobs` (each with its timeout in
    /// seconds): a job left out is no longer expected, one unchanged keeps its progress (a
    /// scheduler publishes at every start, and replicas in high availability publish the same
    /// set). Only `publisher`'s (or those published before publishers were recorded) of agents
    /// `access` allows are replaced: another scheduler's jobs, and agents outside the token,
    /// are left alone. A job another publisher published becomes `publisher`'s. Returns
    /// `publisher`'s, by name.
    pub async fn sync_scheduled(
        &self,
        jobs: &[ScheduledExpectation],
        publisher: &str,
        access: &AgentAccess,
        now: DateTime<Utc>,
    ) -> Result<Vec<Expectation>, StoreError> {
        let now = now.trunc_subsecs(6);
        let mut tx = Tx::begin(self).await?;
        for job in jobs {
            upsert(
                &mut tx,
                &job.expectation,
                job.timeout_seconds,
                Some(publisher),
                now,
            )
            .await?;
        }
        set_job_settings(&mut tx, jobs).await?;
        let names: Vec<&str> = jobs
            .iter()
            .map(|job| job.expectation.agent_name.as_str())
            .collect();
        let published = Cond::any()
            .add(Expr::col(AgentExpectations::Publisher).eq(publisher))
            .add(Expr::col(AgentExpectations::Publisher).is_null());
        let mut delete = Query::delete();
        delete
            .from_table(AgentExpectations::Table)
            .and_where(
                Expr::col(AgentExpectations::Source).eq(ExpectationSource::Scheduler.as_str()),
            )
            .cond_where(published)
            .and_where(Expr::col(AgentExpectations::Name).is_not_in(names));
        if let Some(access) = access.condition(AgentExpectations::AgentName) {
            delete.cond_where(access);
        }
        tx.execute(&delete).await?;
        let stored: Vec<ExpectationRow> = tx
            .fetch(
                select_expectations(ExpectationSource::Scheduler)
                    .and_where(Expr::col(AgentExpectations::Publisher).eq(publisher)),
            )
            .await?;
        tx.commit().await?;
        Ok(stored
            .iter()
            .map(|row| row.view(&self.crons, now, None))
            .collect())
    }

    /// Removes `agent`'s expectation declared over the API: `false` when there was none.
    pub async fn delete_expectation(&self, agent: &AgentName) -> Result<bool, StoreError> {
        let mut delete = Query::delete();
        delete
            .from_table(AgentExpectations::Table)
            .and_where(Expr::col(AgentExpectations::Source).eq(ExpectationSource::Api.as_str()))
            .and_where(Expr::col(AgentExpectations::Name).eq(agent.as_str()));
        let mut tx = Tx::begin(self).await?;
        let deleted = tx.execute(&delete).await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    /// Every expectation the caller may see, by name, with its slots around `now`.
    pub async fn list_expectations(
        &self,
        access: &AgentAccess,
        now: DateTime<Utc>,
    ) -> Result<Vec<Expectation>, StoreError> {
        let mut select = Query::select();
        select
            .columns(expectation_columns())
            .from(AgentExpectations::Table)
            .order_by(AgentExpectations::Name, Order::Asc)
            .order_by(AgentExpectations::Source, Order::Asc);
        if let Some(access) = access.condition(AgentExpectations::AgentName) {
            select.cond_where(access);
        }
        let rows: Vec<ExpectationRow> = self.fetch(&select).await?;
        // A period's next slot counts from the agent's last run, as the watcher reads it.
        let periodic: Vec<&str> = rows
            .iter()
            .filter(|r| r.every_seconds.is_some())
            .map(|r| r.agent_name.as_str())
            .collect();
        let last_runs: HashMap<String, DateTime<Utc>> = if periodic.is_empty() {
            HashMap::new()
        } else {
            self.last_times(Some(&periodic))
                .await?
                .into_iter()
                .filter_map(|t| t.last_run_at.map(|at| (t.agent_name, at)))
                .collect()
        };
        Ok(rows
            .iter()
            .map(|row| row.view(&self.crons, now, last_runs.get(&row.agent_name).copied()))
            .collect())
    }

    /// `expectation`'s cadence (a cron's parsed once and kept).
    pub fn cadence(&self, expectation: &ExpectationRow) -> Result<Cadence, String> {
        expectation.cadence(&self.crons)
    }
}

impl Tx {
    /// The expectations with something to judge at `now`, by name: due (new or changed, a
    /// slot's grace ended, or it would go stale), or of an agent `changes` names in `changed`.
    pub(crate) async fn due_expectations(
        &mut self,
        now: DateTime<Utc>,
        changes: &SummaryChanges,
        changed: &HashSet<String>,
    ) -> Result<Vec<ExpectationRow>, StoreError> {
        let mut select = Query::select();
        select
            .columns(expectation_columns())
            .column(AgentExpectations::NextCheckAt)
            .from(AgentExpectations::Table)
            .cond_where(
                Cond::any()
                    .add(Expr::col(AgentExpectations::NextCheckAt).lte(now))
                    .add(changes.agent_is_in(AgentExpectations::AgentName, changed)),
            )
            .order_by(AgentExpectations::Name, Order::Asc);
        self.fetch(&select).await
    }

    /// Records the watcher's progress through `expectation`: its slots judged up to
    /// `checked_until`, its next judging due at `next_check_at`.
    pub(crate) async fn set_expectation_progress(
        &mut self,
        expectation: &ExpectationRow,
        checked_until: DateTime<Utc>,
        next_check_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut update = Query::update();
        update
            .table(AgentExpectations::Table)
            .values([
                (AgentExpectations::CheckedUntil, checked_until.into()),
                (AgentExpectations::NextCheckAt, next_check_at.into()),
            ])
            .and_where(Expr::col(AgentExpectations::Source).eq(expectation.source.as_str()))
            .and_where(Expr::col(AgentExpectations::Name).eq(expectation.name.as_str()));
        self.execute(&update).await?;
        Ok(())
    }
}

/// The expectations of `source`, by name.
fn select_expectations(source: ExpectationSource) -> sea_query::SelectStatement {
    Query::select()
        .columns(expectation_columns())
        .from(AgentExpectations::Table)
        .and_where(Expr::col(AgentExpectations::Source).eq(source.as_str()))
        .order_by(AgentExpectations::Name, Order::Asc)
        .to_owned()
}

/// Inserts `expectation` (a scheduler's: with its `publisher`), or updates the one of its
/// source and name (its progress kept when the cadence is the same): `true` when inserted.
async fn upsert(
    tx: &mut Tx,
    expectation: &NewExpectation,
    timeout_seconds: Option<i64>,
    publisher: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let name = expectation.agent_name.as_str();
    let (cron, timezone, every) = expectation.cadence.columns();
    let select = select_expectations(expectation.source)
        .and_where(Expr::col(AgentExpectations::Name).eq(name))
        .to_owned();
    let existing: Option<ExpectationRow> = tx.fetch(&select).await?.pop();
    let grace = expectation.grace.num_seconds();
    match existing {
        None => {
            let mut insert = Query::insert();
            insert
                .into_table(AgentExpectations::Table)
                .columns(
                    expectation_columns()
                        .into_iter()
                        .chain([AgentExpectations::NextCheckAt]),
                )
                .values_panic([
                    name.into(),
                    name.into(),
                    cron.into(),
                    timezone.into(),
                    every.into(),
                    grace.into(),
                    timeout_seconds.into(),
                    expectation.source.as_str().into(),
                    now.into(),
                    now.into(),
                    now.into(),
                    publisher.into(),
                    // Judged at the next pass.
                    now.into(),
                ]);
            tx.execute(&insert).await?;
            Ok(true)
        }
        Some(row) => {
            let same_cadence = (
                row.cron.as_deref(),
                row.timezone.as_deref(),
                row.every_seconds,
            ) == (cron.as_deref(), timezone.as_deref(), every);
            if same_cadence && row.grace_seconds == grace && row.timeout_seconds == timeout_seconds
            {
                if row.publisher.as_deref() != publisher {
                    let mut update = Query::update();
                    update
                        .table(AgentExpectations::Table)
                        .value(AgentExpectations::Publisher, publisher)
                        .and_where(
                            Expr::col(AgentExpectations::Source).eq(expectation.source.as_str()),
                        )
                        .and_where(Expr::col(AgentExpectations::Name).eq(name));
                    tx.execute(&update).await?;
                }
                return Ok(false);
            }
            let mut update = Query::update();
            update
                .table(AgentExpectations::Table)
                .values([
                    (AgentExpectations::Cron, cron.into()),
                    (AgentExpectations::Timezone, timezone.into()),
                    (AgentExpectations::EverySeconds, every.into()),
                    (AgentExpectations::GraceSeconds, grace.into()),
                    (AgentExpectations::TimeoutSeconds, timeout_seconds.into()),
                    (AgentExpectations::Publisher, publisher.into()),
                    (AgentExpectations::UpdatedAt, now.into()),
                    (
                        AgentExpectations::CheckedUntil,
                        if same_cadence { row.checked_until } else { now }.into(),
                    ),
                    // Judged afresh at the next pass.
                    (AgentExpectations::NextCheckAt, now.into()),
                ])
                .and_where(Expr::col(AgentExpectations::Source).eq(expectation.source.as_str()))
                .and_where(Expr::col(AgentExpectations::Name).eq(name));
            tx.execute(&update).await?;
            Ok(false)
        }
    }
}
