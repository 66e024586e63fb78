//! Expectations, missed slots and incidents: stored, listed, and opened or resolved.

use agent_sdk::wire::{
    Expectation, ExpectationSource, Incident, IncidentKind, LateSlot, MissedSlot,
};
use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use sea_query::{Expr, ExprTrait, Order, Query, SelectStatement};
use sqlx::FromRow;

use super::memo::Memo;
use super::reads::AgentAccess;
use super::schema::{AgentExpectations, Agents, AlertEvents, Incidents, LateSlots, MissedSlots};
use super::tx::Tx;
use super::{Store, StoreError};
use crate::domain::{AgentName, Cadence, NewExpectation, human};

/// A stored expectation, as read back.
#[derive(Debug, Clone, FromRow)]
pub(super) struct ExpectationRow {
    pub(super) name: String,
    pub(super) agent_name: String,
    pub(super) cron: Option<String>,
    pub(super) timezone: Option<String>,
    pub(super) every_seconds: Option<i64>,
    pub(super) grace_seconds: i64,
    pub(super) timeout_seconds: Option<i64>,
    pub(super) source: String,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) checked_until: DateTime<Utc>,
    /// Read by the watcher only (absent elsewhere).
    #[sqlx(default)]
    pub(super) next_check_at: Option<DateTime<Utc>>,
}

/// Cron cadences parsed once per (expression, zone) and kept across the watcher's passes:
/// parsing 10 000 expressions was half of a pass's CPU (croner builds each field bit by bit).
pub(super) type Crons = Memo<(String, String), Cadence>;

fn cron_cadence(crons: &Crons, cron: &str, timezone: &str) -> Result<Cadence, String> {
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

    pub(super) fn grace(&self) -> TimeDelta {
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

pub(super) fn expectation_columns() -> [AgentExpectations; 11] {
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
    ]
}

#[derive(FromRow)]
struct MissedRow {
    id: i64,
    agent_name: String,
    slot: DateTime<Utc>,
    detected_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct LateRow {
    id: i64,
    agent_name: String,
    slot: DateTime<Utc>,
    started_at: DateTime<Utc>,
    detected_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct IncidentRow {
    id: i64,
    agent_name: String,
    kind: String,
    opened_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    summary: String,
}

/// Longest one-line summary of an incident, in characters.
const SUMMARY_MAX_CHARS: usize = 500;

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
        let created = upsert(&mut tx, expectation, None, now).await?;
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

    /// Replaces the expectations schedulers published with `jobs` (each with its timeout in
    /// seconds): a job left out is no longer expected, one unchanged keeps its progress (a
    /// scheduler publishes at every start, and replicas in high availability publish the same
    /// set). Returns them, by name.
    pub async fn sync_scheduled(
        &self,
        jobs: &[(NewExpectation, Option<i64>)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Expectation>, StoreError> {
        let now = now.trunc_subsecs(6);
        let mut tx = Tx::begin(self).await?;
        for (job, timeout) in jobs {
            upsert(&mut tx, job, *timeout, now).await?;
        }
        let names: Vec<&str> = jobs
            .iter()
            .map(|(job, _)| job.agent_name.as_str())
            .collect();
        let mut delete = Query::delete();
        delete
            .from_table(AgentExpectations::Table)
            .and_where(
                Expr::col(AgentExpectations::Source).eq(ExpectationSource::Scheduler.as_str()),
            )
            .and_where(Expr::col(AgentExpectations::Name).is_not_in(names));
        tx.execute(&delete).await?;
        let stored: Vec<ExpectationRow> = tx
            .fetch(&select_expectations(ExpectationSource::Scheduler))
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
            self.fetch::<LastTimes, _>(&last_times(Some(&periodic)))
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

    /// Missed slots, newest detection first.
    pub async fn list_missed(
        &self,
        agent: Option<&AgentName>,
        access: &AgentAccess,
        limit: u64,
    ) -> Result<Vec<MissedSlot>, StoreError> {
        use MissedSlots as M;
        let columns = [M::Id, M::AgentName, M::Slot, M::DetectedAt];
        let keys = [M::AgentName, M::DetectedAt, M::Id];
        let select = slots_listing(M::Table, columns, keys, agent, access, limit);
        let rows: Vec<MissedRow> = self.fetch(&select).await?;
        Ok(rows
            .into_iter()
            .map(|r| MissedSlot {
                id: r.id,
                agent_name: r.agent_name,
                slot: r.slot,
                detected_at: r.detected_at,
            })
            .collect())
    }

    /// Slots answered late, newest detection first.
    pub async fn list_late(
        &self,
        agent: Option<&AgentName>,
        access: &AgentAccess,
        limit: u64,
    ) -> Result<Vec<LateSlot>, StoreError> {
        use LateSlots as L;
        let columns = [L::Id, L::AgentName, L::Slot, L::StartedAt, L::DetectedAt];
        let keys = [L::AgentName, L::DetectedAt, L::Id];
        let select = slots_listing(L::Table, columns, keys, agent, access, limit);
        let rows: Vec<LateRow> = self.fetch(&select).await?;
        Ok(rows
            .into_iter()
            .map(|r| LateSlot {
                id: r.id,
                agent_name: r.agent_name,
                slot: r.slot,
                started_at: r.started_at,
                detected_at: r.detected_at,
            })
            .collect())
    }

    /// Incidents, open ones first, then the latest opened; `open` keeps only open (`true`) or
    /// resolved (`false`) ones.
    pub async fn list_incidents(
        &self,
        open: Option<bool>,
        agent: Option<&AgentName>,
        access: &AgentAccess,
        limit: u64,
    ) -> Result<Vec<Incident>, StoreError> {
        let mut select = Query::select();
        select
            .columns([
                Incidents::Id,
                Incidents::AgentName,
                Incidents::Kind,
                Incidents::OpenedAt,
                Incidents::ResolvedAt,
                Incidents::Summary,
            ])
            .from(Incidents::Table)
            .and_where_option(agent.map(|a| Expr::col(Incidents::AgentName).eq(a.as_str())))
            .and_where_option(open.map(|open| {
                if open {
                    Expr::col(Incidents::ResolvedAt).is_null()
                } else {
                    Expr::col(Incidents::ResolvedAt).is_not_null()
                }
            }))
            .order_by_expr(Expr::col(Incidents::ResolvedAt).is_null(), Order::Desc)
            .order_by(Incidents::OpenedAt, Order::Desc)
            .order_by(Incidents::Id, Order::Desc)
            .limit(limit);
        if let Some(access) = access.condition(Incidents::AgentName) {
            select.cond_where(access);
        }
        let rows: Vec<IncidentRow> = self.fetch(&select).await?;
        rows.into_iter()
            .map(|r| {
                Ok(Incident {
                    id: r.id,
                    kind: IncidentKind::parse(&r.kind).ok_or_else(|| {
                        StoreError::internal(
                            "reading incidents",
                            format!("unknown kind {:?}", r.kind),
                        )
                    })?,
                    agent_name: r.agent_name,
                    opened_at: r.opened_at,
                    resolved_at: r.resolved_at,
                    summary: r.summary,
                })
            })
            .collect()
    }
}

/// `columns` of a slots table (`missed_slots`, `late_slots`) that the caller may read, of
/// `agent` or all, newest detection first; `keys`: its agent, detection time and id columns.
fn slots_listing<C, const N: usize>(
    table: C,
    columns: [C; N],
    [agent_name, detected_at, id]: [C; 3],
    agent: Option<&AgentName>,
    access: &AgentAccess,
    limit: u64,
) -> sea_query::SelectStatement
where
    C: sea_query::Iden + Copy + 'static,
{
    let mut select = Query::select();
    select
        .columns(columns)
        .from(table)
        .and_where_option(agent.map(|a| Expr::col(agent_name).eq(a.as_str())))
        .order_by(detected_at, Order::Desc)
        .order_by(id, Order::Desc)
        .limit(limit);
    if let Some(access) = access.condition(agent_name) {
        select.cond_where(access);
    }
    select
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

/// Inserts `expectation`, or updates the one of its source and name (its progress kept when
/// the cadence is the same): `true` when inserted.
async fn upsert(
    tx: &mut Tx,
    expectation: &NewExpectation,
    timeout_seconds: Option<i64>,
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

/// Each agent's latest run and latest success (of `agents`, or all), from the table `agents`
/// (the daily summaries over all days, one row per agent): finished runs, what both the
/// watcher and `GET /expectations` count a period from.
#[derive(FromRow)]
pub(super) struct LastTimes {
    pub(super) agent_name: String,
    pub(super) last_run_at: Option<DateTime<Utc>>,
    pub(super) last_success_at: Option<DateTime<Utc>>,
}

/// The query of [`LastTimes`].
pub(super) fn last_times(agents: Option<&[&str]>) -> sea_query::SelectStatement {
    Query::select()
        .columns([Agents::AgentName, Agents::LastRunAt, Agents::LastSuccessAt])
        .from(Agents::Table)
        .and_where_option(
            agents.map(|agents| Expr::col(Agents::AgentName).is_in(agents.iter().copied())),
        )
        .to_owned()
}

/// Opens an incident of `kind` for `agent` at `at` unless one is open: `true` when opened.
pub(super) async fn open_incident(
    tx: &mut Tx,
    agent: &str,
    kind: IncidentKind,
    at: DateTime<Utc>,
    summary: &str,
) -> Result<bool, StoreError> {
    let summary: String = summary
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(SUMMARY_MAX_CHARS)
        .collect();
    let open = Query::select()
        .expr(Expr::val(1))
        .from(Incidents::Table)
        .and_where(Expr::col(Incidents::AgentName).eq(agent))
        .and_where(Expr::col(Incidents::Kind).eq(kind.as_str()))
        .and_where(Expr::col(Incidents::ResolvedAt).is_null())
        .to_owned();
    let values = Query::select()
        .exprs([
            Expr::val(agent),
            Expr::val(kind.as_str()),
            Expr::val(at),
            Expr::val(summary),
        ])
        .and_where(Expr::exists(open).not())
        .to_owned();
    let mut insert = Query::insert();
    insert
        .into_table(Incidents::Table)
        .columns([
            Incidents::AgentName,
            Incidents::Kind,
            Incidents::OpenedAt,
            Incidents::Summary,
        ])
        .select_from(values)
        .map_err(|e| StoreError::internal("opening an incident", e.to_string()))?
        .returning_col(Incidents::Id);
    let Some((id,)) = tx.fetch::<(i64,), _>(&insert).await?.pop() else {
        return Ok(false);
    };
    record_event(tx, id, "opened", at).await?;
    Ok(true)
}

/// An incident opened or resolved, for the alert sender (`alerts/`), in the same transaction:
/// no transition is lost, none is sent twice.
async fn record_event(
    tx: &mut Tx,
    incident: i64,
    event: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut insert = Query::insert();
    insert
        .into_table(AlertEvents::Table)
        .columns([
            AlertEvents::IncidentId,
            AlertEvents::Event,
            AlertEvents::CreatedAt,
        ])
        .values_panic([incident.into(), event.into(), at.into()]);
    tx.execute(&insert).await?;
    Ok(())
}

/// The open incidents, (agent, kind): the console's overview and the watcher's pass read them.
pub(super) fn open_incidents() -> SelectStatement {
    Query::select()
        .columns([Incidents::AgentName, Incidents::Kind])
        .from(Incidents::Table)
        .and_where(Expr::col(Incidents::ResolvedAt).is_null())
        .to_owned()
}

/// Resolves `agent`'s open incident of `kind` at `at`: `true` when there was one.
pub(super) async fn resolve_incident(
    tx: &mut Tx,
    agent: &str,
    kind: IncidentKind,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    // Never before it opened: a pass whose clock is behind the one that opened it (another
    // replica's, or this one's before it went back) resolves it at its opening, as the
    // condition has cleared all the same; left open, it would wait for the next slot.
    let mut update = Query::update();
    update
        .table(Incidents::Table)
        .value(
            Incidents::ResolvedAt,
            Expr::case(Expr::col(Incidents::OpenedAt).lte(at), at)
                .finally(Expr::col(Incidents::OpenedAt)),
        )
        .and_where(Expr::col(Incidents::AgentName).eq(agent))
        .and_where(Expr::col(Incidents::Kind).eq(kind.as_str()))
        .and_where(Expr::col(Incidents::ResolvedAt).is_null())
        .returning(Query::returning().columns([Incidents::Id, Incidents::OpenedAt]));
    let resolved = tx.fetch::<(i64, DateTime<Utc>), _>(&update).await?.pop();
    let Some((id, opened_at)) = resolved else {
        return Ok(false);
    };
    record_event(tx, id, "resolved", Ord::max(at, opened_at)).await?;
    Ok(true)
}
