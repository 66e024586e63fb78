//! Incidents and their transitions: opened and resolved (each an alert event, in the same
//! transaction), listed open first.

use std::collections::{HashMap, HashSet};

use agent_sdk::wire::{Incident, IncidentKind};
use chrono::{DateTime, Utc};
use sea_query::{Expr, ExprTrait, Order, Query, SelectStatement};
use sqlx::FromRow;

use super::tables::{AlertEvents, Incidents};
use super::{AgentAccess, Store, StoreError, Tx};
use crate::domain::AgentName;

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

    /// The kinds of each agent's open incidents.
    pub(super) async fn open_incident_kinds(
        &self,
    ) -> Result<HashMap<String, Vec<IncidentKind>>, StoreError> {
        let mut open: HashMap<String, Vec<IncidentKind>> = HashMap::new();
        for (agent, kind) in parse_open(self.fetch(&open_incidents()).await?) {
            open.entry(agent).or_default().push(kind);
        }
        Ok(open)
    }
}

impl Tx {
    /// Every open incident, (agent, kind).
    pub(crate) async fn open_incidents(
        &mut self,
    ) -> Result<HashSet<(String, IncidentKind)>, StoreError> {
        Ok(parse_open(self.fetch(&open_incidents()).await?).collect())
    }

    /// Opens an incident of `kind` for `agent` at `at` unless one is open: `true` when opened.
    pub(crate) async fn open_incident(
        &mut self,
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
        let Some((id,)) = self.fetch::<(i64,), _>(&insert).await?.pop() else {
            return Ok(false);
        };
        self.record_event(id, "opened", at).await?;
        Ok(true)
    }

    /// Resolves `agent`'s open incident of `kind` at `at`: `true` when there was one.
    pub(crate) async fn resolve_incident(
        &mut self,
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
        let resolved = self.fetch::<(i64, DateTime<Utc>), _>(&update).await?.pop();
        let Some((id, opened_at)) = resolved else {
            return Ok(false);
        };
        self.record_event(id, "resolved", Ord::max(at, opened_at))
            .await?;
        Ok(true)
    }

    /// An incident opened or resolved, for the alert sender (`watch/alerts/`), in the same
    /// transaction: no transition is lost, none is sent twice.
    async fn record_event(
        &mut self,
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
        self.execute(&insert).await?;
        Ok(())
    }
}

/// The open incidents, (agent, kind).
fn open_incidents() -> SelectStatement {
    Query::select()
        .columns([Incidents::AgentName, Incidents::Kind])
        .from(Incidents::Table)
        .and_where(Expr::col(Incidents::ResolvedAt).is_null())
        .to_owned()
}

/// The rows of [`open_incidents`], of kinds this binary knows.
fn parse_open(rows: Vec<(String, String)>) -> impl Iterator<Item = (String, IncidentKind)> {
    rows.into_iter()
        .filter_map(|(agent, kind)| IncidentKind::parse(&kind).map(|k| (agent, k)))
}
