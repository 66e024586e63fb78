//! Silences: the alerts of matching incidents held while one is in force (`silences`), and
//! what routing makes of the events one held (`Store::route_alert_events`).

use agent_sdk::wire::{AuditAction, IncidentKind, Silence};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use sea_query::{Cond, Expr, ExprTrait, Order, Query};
use sqlx::FromRow;

use super::tables::{AlertEvents, Silences};
use super::{Acted, Store, StoreError, Tx};
use crate::domain::AgentPattern;

/// How long an ended silence is still listed and still decides the events it held.
pub const SILENCES_KEPT: TimeDelta = TimeDelta::days(7);

/// A silence as routing applies it to alert events.
#[derive(Debug, Clone)]
pub(super) struct SilenceRule {
    pub(super) id: i64,
    patterns: Vec<AgentPattern>,
    /// Empty: every kind.
    kinds: Vec<IncidentKind>,
    since: DateTime<Utc>,
    /// When it stops holding alerts: its `until`, or when it was ended before.
    pub(super) end: DateTime<Utc>,
}

impl SilenceRule {
    /// Whether it holds the alerts of `agent`'s incident of `kind` raised at `at`.
    pub(super) fn holds(&self, agent: &str, kind: IncidentKind, at: DateTime<Utc>) -> bool {
        self.since <= at
            && at < self.end
            && (self.kinds.is_empty() || self.kinds.contains(&kind))
            && self.patterns.iter().any(|p| p.matches(agent))
    }
}

/// A silence as stored.
#[derive(Debug, Clone, FromRow)]
struct SilenceRow {
    id: i64,
    agents: String,
    kinds: Option<String>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    note: Option<String>,
    created_by: String,
    ended_at: Option<DateTime<Utc>>,
}

impl SilenceRow {
    fn patterns(&self) -> Vec<AgentPattern> {
        serde_json::from_str::<Vec<String>>(&self.agents)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    fn kinds(&self) -> Vec<IncidentKind> {
        self.kinds
            .as_deref()
            .and_then(|k| serde_json::from_str(k).ok())
            .unwrap_or_default()
    }

    /// When it stops holding alerts.
    fn end(&self) -> DateTime<Utc> {
        self.ended_at
            .map_or(self.until, |ended| Ord::min(ended, self.until))
    }

    /// What routing needs of it, its lists read once.
    fn rule(&self) -> SilenceRule {
        SilenceRule {
            id: self.id,
            patterns: self.patterns(),
            kinds: self.kinds(),
            since: self.since,
            end: self.end(),
        }
    }

    fn view(&self, now: DateTime<Utc>) -> Silence {
        Silence {
            id: self.id,
            agents: serde_json::from_str(&self.agents).unwrap_or_default(),
            kinds: self.kinds(),
            since: self.since,
            until: self.until,
            ended_at: self.ended_at,
            created_by: self.created_by.clone(),
            note: self.note.clone(),
            active: self.since <= now && now < self.end(),
        }
    }
}

fn select_silences() -> sea_query::SelectStatement {
    Query::select()
        .columns([
            Silences::Id,
            Silences::Agents,
            Silences::Kinds,
            Silences::Since,
            Silences::Until,
            Silences::Note,
            Silences::CreatedBy,
            Silences::EndedAt,
        ])
        .from(Silences::Table)
        .take()
}

/// Silences in force at `now`, or ended within [`SILENCES_KEPT`].
fn recent(now: DateTime<Utc>) -> Cond {
    let kept = now - SILENCES_KEPT;
    Cond::all().add(Expr::col(Silences::Until).gt(kept)).add(
        Cond::any()
            .add(Expr::col(Silences::EndedAt).is_null())
            .add(Expr::col(Silences::EndedAt).gt(kept)),
    )
}

impl Store {
    /// Silences `agents`' incidents of `kinds` (every kind when empty) from `now` until `until`.
    pub async fn create_silence(
        &self,
        agents: &[AgentPattern],
        kinds: &[IncidentKind],
        until: DateTime<Utc>,
        note: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Silence, StoreError> {
        let now = now.trunc_subsecs(6);
        let agents: Vec<String> = agents.iter().map(ToString::to_string).collect();
        // Lists of names and kinds: serializing them cannot fail.
        let agents = serde_json::to_string(&agents).unwrap_or_default();
        let kinds = (!kinds.is_empty()).then(|| serde_json::to_string(kinds).unwrap_or_default());
        let mut tx = Tx::begin(self).await?;
        let ids: Vec<(i64,)> = tx
            .fetch(
                Query::insert()
                    .into_table(Silences::Table)
                    .columns([
                        Silences::Agents,
                        Silences::Kinds,
                        Silences::Since,
                        Silences::Until,
                        Silences::Note,
                        Silences::CreatedBy,
                    ])
                    .values_panic([
                        agents.into(),
                        kinds.into(),
                        now.into(),
                        until.into(),
                        note.into(),
                        actor.into(),
                    ])
                    .returning_col(Silences::Id),
            )
            .await?;
        let id = ids
            .first()
            .map(|(id,)| *id)
            .ok_or_else(|| StoreError::internal("creating a silence", "no id returned"))?;
        tx.audit_silence(actor, AuditAction::Silence, id, note, now)
            .await?;
        let row: Option<SilenceRow> = tx
            .fetch(select_silences().and_where(Expr::col(Silences::Id).eq(id)))
            .await?
            .pop();
        tx.commit().await?;
        row.map(|r| r.view(now))
            .ok_or_else(|| StoreError::internal("creating a silence", "not found after insert"))
    }

    /// Silences in force, then those ended within [`SILENCES_KEPT`], newest first, that
    /// `visible` says the caller may see.
    pub async fn list_silences(
        &self,
        now: DateTime<Utc>,
        visible: impl Fn(&[AgentPattern]) -> bool,
    ) -> Result<Vec<Silence>, StoreError> {
        let rows: Vec<SilenceRow> = self
            .fetch(
                select_silences()
                    .cond_where(recent(now))
                    .order_by(Silences::Id, Order::Desc),
            )
            .await?;
        let mut silences: Vec<Silence> = rows
            .iter()
            .filter(|row| visible(&row.patterns()))
            .map(|row| row.view(now))
            .collect();
        silences.sort_by_key(|s| !s.active);
        Ok(silences)
    }

    /// The silence `id`'s agent patterns, if it is in force at `now`; `Nothing` when it ended;
    /// `None` when there is no such silence.
    pub async fn silence_patterns(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Acted<Vec<AgentPattern>>>, StoreError> {
        let row: Option<SilenceRow> = self
            .fetch(select_silences().and_where(Expr::col(Silences::Id).eq(id)))
            .await?
            .pop();
        Ok(row.map(|row| {
            if now < row.end() {
                Acted::Done(row.patterns())
            } else {
                Acted::Nothing
            }
        }))
    }

    /// Ends silence `id` now: the events it held are routed at the next pass.
    pub async fn end_silence(
        &self,
        id: i64,
        actor: &str,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Acted<()>, StoreError> {
        let now = now.trunc_subsecs(6);
        let mut tx = Tx::begin(self).await?;
        let ended = tx
            .execute(
                Query::update()
                    .table(Silences::Table)
                    .values([
                        (Silences::EndedAt, now.into()),
                        (Silences::EndedBy, actor.into()),
                    ])
                    .and_where(Expr::col(Silences::Id).eq(id))
                    .and_where(Expr::col(Silences::EndedAt).is_null())
                    .and_where(Expr::col(Silences::Until).gt(now)),
            )
            .await?;
        if ended == 0 {
            return Ok(Acted::Nothing);
        }
        tx.execute(
            Query::update()
                .table(AlertEvents::Table)
                .value(AlertEvents::SilencedUntil, now)
                .and_where(Expr::col(AlertEvents::SilencedBy).eq(id))
                .and_where(Expr::col(AlertEvents::SilencedUntil).gt(now)),
        )
        .await?;
        tx.audit_silence(actor, AuditAction::Unsilence, id, note, now)
            .await?;
        tx.commit().await?;
        Ok(Acted::Done(()))
    }
}

impl Tx {
    /// The silences that may decide an event routed at `now`.
    pub(super) async fn recent_silences(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<Vec<SilenceRule>, StoreError> {
        let rows: Vec<SilenceRow> = self
            .fetch(&select_silences().cond_where(recent(now)).take())
            .await?;
        Ok(rows.iter().map(SilenceRow::rule).collect())
    }
}
