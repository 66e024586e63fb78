//! The alert sender's queue: events routed to deliveries, deliveries due, attempts recorded.

use agent_sdk::wire::{Incident, IncidentKind, RunStatus};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use sea_query::{Cond, Expr, ExprTrait, LockBehavior, LockType, OnConflict, Order, Query};
use sqlx::FromRow;

use super::tables::{AgentRuns, AlertAttempts, AlertDeliveries, AlertEvents, Incidents};
use super::{Store, StoreError, Tx};

/// A delivery due now, with what it is about.
#[derive(Debug, Clone)]
pub struct DueAlert {
    pub delivery_id: i64,
    pub route: String,
    /// Attempts made before this one.
    pub attempts: i32,
    /// `opened` or `resolved`.
    pub event: String,
    pub event_at: DateTime<Utc>,
    pub incident: Incident,
    /// The last lines of the agent's latest failed run's error, for `failing` and `overdue`.
    pub error: Option<String>,
    /// That run's id, for a link to its page.
    pub run_id: Option<i64>,
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(DateTime<Utc>),
    GaveUp,
}

#[derive(FromRow)]
struct EventRow {
    id: i64,
    incident_id: i64,
    agent_name: String,
    kind: String,
    event: String,
    created_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    silenced_by: Option<i64>,
}

/// An event a silence held, once the silence has ended: sent if its transition is still open
/// (an `opened` whose incident is still open, a `resolved` whose `opened` was sent), else
/// dropped.
async fn decide_held(tx: &mut Tx, event: &EventRow, silence: i64) -> Result<Route, StoreError> {
    let open = match event.event.as_str() {
        "opened" => event.resolved_at.is_none(),
        _ => {
            let opened: Vec<(Option<i64>,)> = tx
                .fetch(
                    Query::select()
                        .column(AlertEvents::SilencedBy)
                        .from(AlertEvents::Table)
                        .and_where(Expr::col(AlertEvents::IncidentId).eq(event.incident_id))
                        .and_where(Expr::col(AlertEvents::Event).eq("opened")),
                )
                .await?;
            opened.iter().all(|(held,)| held.is_none())
        }
    };
    Ok(if open {
        Route::Send
    } else {
        Route::Drop { silence }
    })
}

/// What routing does with an event.
enum Route {
    /// Its deliveries, one per matching route.
    Send,
    /// Nothing yet: a silence in force holds it until its end.
    Hold { silence: i64, until: DateTime<Utc> },
    /// Never sent: a silence held it and its transition is no longer open.
    Drop { silence: i64 },
}

#[derive(FromRow)]
struct DueRow {
    delivery_id: i64,
    route: String,
    attempts: i32,
    event: String,
    event_at: DateTime<Utc>,
    incident_id: i64,
    agent_name: String,
    kind: String,
    opened_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    summary: String,
}

/// Most lines of an error quoted in an alert.
const ERROR_LINES: usize = 10;

impl Store {
    /// Gives every event not routed yet its deliveries: one per route `routes` names for the
    /// incident's agent and kind, due at `now`. Returns how many deliveries it created.
    ///
    /// An event a silence holds (`silences.rs`) waits, unrouted, until the silence ends; then
    /// it is sent if its transition is still open (an `opened` whose incident is still open, a
    /// `resolved` whose `opened` was sent), and otherwise never.
    pub async fn route_alert_events(
        &self,
        routes: impl Fn(&str, IncidentKind) -> Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let now = now.trunc_subsecs(6);
        let mut tx = Tx::begin(self).await?;
        let select = Query::select()
            .column((AlertEvents::Table, AlertEvents::Id))
            .columns([
                (AlertEvents::Table, AlertEvents::IncidentId),
                (AlertEvents::Table, AlertEvents::Event),
                (AlertEvents::Table, AlertEvents::CreatedAt),
                (AlertEvents::Table, AlertEvents::SilencedBy),
            ])
            .columns([
                (Incidents::Table, Incidents::AgentName),
                (Incidents::Table, Incidents::Kind),
                (Incidents::Table, Incidents::ResolvedAt),
            ])
            .from(AlertEvents::Table)
            .inner_join(
                Incidents::Table,
                Expr::col((Incidents::Table, Incidents::Id))
                    .equals((AlertEvents::Table, AlertEvents::IncidentId)),
            )
            .and_where(Expr::col((AlertEvents::Table, AlertEvents::RoutedAt)).is_null())
            .cond_where(
                Cond::any()
                    .add(Expr::col((AlertEvents::Table, AlertEvents::SilencedUntil)).is_null())
                    .add(Expr::col((AlertEvents::Table, AlertEvents::SilencedUntil)).lte(now)),
            )
            .order_by((AlertEvents::Table, AlertEvents::Id), Order::Asc)
            .limit(1000)
            .to_owned();
        let events: Vec<EventRow> = tx.fetch(&select).await?;
        let silences = if events.is_empty() {
            Vec::new()
        } else {
            tx.recent_silences(now).await?
        };
        let mut created = 0;
        for event in &events {
            let Some(kind) = IncidentKind::parse(&event.kind) else {
                continue;
            };
            let holding = silences
                .iter()
                .find(|s| s.holds(&event.agent_name, kind, event.created_at));
            let route = match (holding, event.silenced_by) {
                (Some(silence), _) if silence.end > now => Route::Hold {
                    silence: silence.id,
                    until: silence.end,
                },
                (Some(silence), _) => decide_held(&mut tx, event, silence.id).await?,
                (None, Some(silence)) => decide_held(&mut tx, event, silence).await?,
                (None, None) => Route::Send,
            };
            let mut update = Query::update();
            update
                .table(AlertEvents::Table)
                .and_where(Expr::col(AlertEvents::Id).eq(event.id));
            match route {
                Route::Hold { silence, until } => {
                    update.values([
                        (AlertEvents::SilencedBy, silence.into()),
                        (AlertEvents::SilencedUntil, until.into()),
                    ]);
                    tx.execute(&update).await?;
                    continue;
                }
                Route::Drop { silence } => {
                    update.values([
                        (AlertEvents::SilencedBy, silence.into()),
                        (AlertEvents::RoutedAt, now.into()),
                    ]);
                    tx.execute(&update).await?;
                    continue;
                }
                Route::Send => {}
            }
            for route in routes(&event.agent_name, kind) {
                let mut insert = Query::insert();
                insert
                    .into_table(AlertDeliveries::Table)
                    .columns([
                        AlertDeliveries::EventId,
                        AlertDeliveries::Route,
                        AlertDeliveries::NextAttemptAt,
                    ])
                    .values_panic([event.id.into(), route.into(), now.into()])
                    .on_conflict(
                        OnConflict::columns([AlertDeliveries::EventId, AlertDeliveries::Route])
                            .do_nothing()
                            .to_owned(),
                    );
                created += usize::try_from(tx.execute(&insert).await?).unwrap_or(0);
            }
            update.value(AlertEvents::RoutedAt, now);
            tx.execute(&update).await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Claims `route`'s deliveries pending and due at `now`, the oldest first, at most
    /// `limit`: each is due again only after `lease` (its attempt records the real next time
    /// before then), so that no other sender, in this process or another replica, attempts it
    /// meanwhile; a sender that dies mid-attempt leaves it to be tried again when the lease
    /// ends (at least once).
    pub async fn claim_due_alerts(
        &self,
        route: &str,
        now: DateTime<Utc>,
        lease: TimeDelta,
        limit: u64,
    ) -> Result<Vec<DueAlert>, StoreError> {
        let now = now.trunc_subsecs(6);
        let select = Query::select()
            .expr_as(
                Expr::col((AlertDeliveries::Table, AlertDeliveries::Id)),
                "delivery_id",
            )
            .column((AlertDeliveries::Table, AlertDeliveries::Route))
            .column((AlertDeliveries::Table, AlertDeliveries::Attempts))
            .column((AlertEvents::Table, AlertEvents::Event))
            .expr_as(
                Expr::col((AlertEvents::Table, AlertEvents::CreatedAt)),
                "event_at",
            )
            .expr_as(Expr::col((Incidents::Table, Incidents::Id)), "incident_id")
            .columns([
                (Incidents::Table, Incidents::AgentName),
                (Incidents::Table, Incidents::Kind),
                (Incidents::Table, Incidents::OpenedAt),
                (Incidents::Table, Incidents::ResolvedAt),
                (Incidents::Table, Incidents::Summary),
            ])
            .from(AlertDeliveries::Table)
            .inner_join(
                AlertEvents::Table,
                Expr::col((AlertEvents::Table, AlertEvents::Id))
                    .equals((AlertDeliveries::Table, AlertDeliveries::EventId)),
            )
            .inner_join(
                Incidents::Table,
                Expr::col((Incidents::Table, Incidents::Id))
                    .equals((AlertEvents::Table, AlertEvents::IncidentId)),
            )
            .and_where(Expr::col((AlertDeliveries::Table, AlertDeliveries::Route)).eq(route))
            .and_where(Expr::col((AlertDeliveries::Table, AlertDeliveries::Status)).eq("pending"))
            .and_where(Expr::col((AlertDeliveries::Table, AlertDeliveries::NextAttemptAt)).lte(now))
            .order_by(
                (AlertDeliveries::Table, AlertDeliveries::NextAttemptAt),
                Order::Asc,
            )
            .order_by((AlertDeliveries::Table, AlertDeliveries::Id), Order::Asc)
            .limit(limit)
            // PostgreSQL: deliveries another sender is claiming are left to it.
            .lock_with_tables_behavior(
                LockType::Update,
                [AlertDeliveries::Table],
                LockBehavior::SkipLocked,
            )
            .to_owned();
        let mut tx = Tx::begin(self).await?;
        let rows: Vec<DueRow> = tx.fetch(&select).await?;
        if !rows.is_empty() {
            let mut lease_until = Query::update();
            lease_until
                .table(AlertDeliveries::Table)
                .value(AlertDeliveries::NextAttemptAt, now + lease)
                .and_where(
                    Expr::col(AlertDeliveries::Id).is_in(rows.iter().map(|r| r.delivery_id)),
                );
            tx.execute(&lease_until).await?;
        }
        tx.commit().await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(kind) = IncidentKind::parse(&row.kind) else {
                continue;
            };
            let (run_id, error) = match kind {
                IncidentKind::Failing | IncidentKind::Overdue => self
                    .latest_error(&row.agent_name)
                    .await?
                    .map_or((None, None), |(id, error)| (Some(id), error)),
                _ => (None, None),
            };
            due.push(DueAlert {
                delivery_id: row.delivery_id,
                route: row.route,
                attempts: row.attempts,
                event: row.event,
                event_at: row.event_at,
                incident: Incident {
                    id: row.incident_id,
                    agent_name: row.agent_name,
                    kind,
                    opened_at: row.opened_at,
                    resolved_at: row.resolved_at,
                    summary: row.summary,
                },
                error,
                run_id,
            });
        }
        Ok(due)
    }

    /// Records attempt `attempt` of a delivery at `now` and what became of it.
    pub async fn record_alert_attempt(
        &self,
        delivery_id: i64,
        attempt: i32,
        now: DateTime<Utc>,
        status_code: Option<u16>,
        error: Option<&str>,
        outcome: AttemptOutcome,
    ) -> Result<(), StoreError> {
        let now = now.trunc_subsecs(6);
        let mut tx = Tx::begin(self).await?;
        let mut insert = Query::insert();
        insert
            .into_table(AlertAttempts::Table)
            .columns([
                AlertAttempts::DeliveryId,
                AlertAttempts::Attempt,
                AlertAttempts::AttemptedAt,
                AlertAttempts::StatusCode,
                AlertAttempts::Error,
            ])
            .values_panic([
                delivery_id.into(),
                attempt.into(),
                now.into(),
                status_code.map(i32::from).into(),
                error.map(str::to_owned).into(),
            ]);
        tx.execute(&insert).await?;
        let (status, next) = match outcome {
            AttemptOutcome::Delivered => ("delivered", now),
            AttemptOutcome::GaveUp => ("gave_up", now),
            AttemptOutcome::RetryAt(at) => ("pending", at.trunc_subsecs(6)),
        };
        let mut update = Query::update();
        update
            .table(AlertDeliveries::Table)
            .values([
                (AlertDeliveries::Status, status.into()),
                (AlertDeliveries::Attempts, attempt.into()),
                (AlertDeliveries::NextAttemptAt, next.into()),
            ])
            .and_where(Expr::col(AlertDeliveries::Id).eq(delivery_id));
        tx.execute(&update).await?;
        tx.commit().await
    }

    /// `agent`'s latest failed run: its id and the last lines of its error.
    async fn latest_error(&self, agent: &str) -> Result<Option<(i64, Option<String>)>, StoreError> {
        let select = Query::select()
            .columns([AgentRuns::Id, AgentRuns::ErrorMessage])
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::AgentName).eq(agent))
            .and_where(Expr::col(AgentRuns::Status).eq(RunStatus::Failed.as_str()))
            .order_by(AgentRuns::StartedAt, Order::Desc)
            .limit(1)
            .to_owned();
        let rows: Vec<(i64, Option<String>)> = self.fetch(&select).await?;
        Ok(rows.into_iter().next().map(|(id, error)| {
            let error = error.map(|error| {
                let lines: Vec<&str> = error.lines().collect();
                lines[lines.len().saturating_sub(ERROR_LINES)..].join("\n")
            });
            (id, error)
        }))
    }
}
