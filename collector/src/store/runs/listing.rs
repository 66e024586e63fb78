//! The runs and metric rows as the API lists them: filtered, newest first, in pages.

use agent_sdk::wire::{
    MetricPage, MetricPoint, MetricValue, Number, RunDetail, RunPage, RunStatus, RunTrigger,
    RunView,
};
use chrono::{DateTime, Utc};
use sea_query::{Expr, ExprTrait, Order, Query, SelectStatement};
use sqlx::FromRow;
use uuid::Uuid;

use crate::domain::{AgentName, Cursor, MetricName};
use crate::store::error::{decode_error, parse_status};
use crate::store::tables::{AgentMetrics, AgentRuns};
use crate::store::{AgentAccess, Store, StoreError, Tx};

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub agent_name: Option<AgentName>,
    /// The run(s) stored under this key (one per agent that used it).
    pub run_key: Option<Uuid>,
    pub status: Option<RunStatus>,
    /// Inclusive lower bound on `started_at`.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `started_at`.
    pub to: Option<DateTime<Utc>>,
    pub cursor: Option<Cursor>,
    pub limit: u64,
    pub access: AgentAccess,
}

#[derive(Debug, Clone, Default)]
pub struct MetricFilter {
    pub agent_name: Option<AgentName>,
    pub metric_name: Option<MetricName>,
    /// Inclusive lower bound on `recorded_at`.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `recorded_at`.
    pub to: Option<DateTime<Utc>>,
    pub cursor: Option<Cursor>,
    pub limit: u64,
    pub access: AgentAccess,
}

#[derive(FromRow)]
struct RunRow {
    id: i64,
    run_key: Option<Uuid>,
    agent_name: String,
    status: String,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
    error_message: Option<String>,
    trigger: String,
    scheduled_for: Option<DateTime<Utc>>,
    host: Option<String>,
    metric_count: i32,
    received_at: DateTime<Utc>,
}

impl TryFrom<RunRow> for RunView {
    type Error = StoreError;

    fn try_from(row: RunRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id,
            run_key: row.run_key,
            agent_name: row.agent_name,
            status: parse_status(&row.status)?,
            started_at: row.started_at,
            finished_at: row.finished_at,
            duration_ms: row.duration_ms,
            error_message: row.error_message,
            trigger: RunTrigger::parse(&row.trigger),
            scheduled_for: row.scheduled_for,
            host: row.host,
            metric_count: row.metric_count,
            received_at: row.received_at,
        })
    }
}

#[derive(FromRow)]
struct MetricRow {
    id: i64,
    run_id: i64,
    agent_name: String,
    metric_name: String,
    metric_value: Option<String>,
    metric_text: Option<String>,
    recorded_at: DateTime<Utc>,
}

impl TryFrom<MetricRow> for MetricPoint {
    type Error = StoreError;

    fn try_from(row: MetricRow) -> Result<Self, Self::Error> {
        let value = match (row.metric_value, row.metric_text) {
            (Some(numeric), _) => Number::from_literal_checked(numeric)
                .map(MetricValue::Number)
                .ok_or_else(|| {
                    decode_error(format!(
                        "metric {} has a value that is not a finite number",
                        row.id
                    ))
                })?,
            (None, Some(text)) => MetricValue::Text(text),
            (None, None) => {
                return Err(decode_error(format!(
                    "metric {} has neither value nor text",
                    row.id
                )));
            }
        };
        Ok(Self {
            id: row.id,
            run_id: row.run_id,
            agent_name: row.agent_name,
            metric_name: row.metric_name,
            value,
            recorded_at: row.recorded_at,
        })
    }
}

fn run_columns(select: &mut SelectStatement) -> &mut SelectStatement {
    select.columns([
        AgentRuns::Id,
        AgentRuns::RunKey,
        AgentRuns::AgentName,
        AgentRuns::Status,
        AgentRuns::StartedAt,
        AgentRuns::FinishedAt,
        AgentRuns::DurationMs,
        AgentRuns::ErrorMessage,
        AgentRuns::Trigger,
        AgentRuns::ScheduledFor,
        AgentRuns::Host,
        AgentRuns::MetricCount,
        AgentRuns::ReceivedAt,
    ])
}

fn metric_columns(select: &mut SelectStatement) -> &mut SelectStatement {
    select
        .columns([
            AgentMetrics::Id,
            AgentMetrics::RunId,
            AgentMetrics::AgentName,
            AgentMetrics::MetricName,
        ])
        // NUMERIC as text keeps every digit; it is a JSON number literal as it stands.
        .expr_as(
            Expr::col(AgentMetrics::MetricValue).cast_as("text"),
            "metric_value",
        )
        .columns([AgentMetrics::MetricText, AgentMetrics::RecordedAt])
}

/// `(time, id) < (cursor.at, cursor.id)`, matching the `(time desc, id desc)` indexes.
fn before_cursor<C: sea_query::IntoColumnRef>(time: C, id: C, cursor: Cursor) -> Expr {
    Expr::tuple([Expr::col(time), Expr::col(id)])
        .lt(Expr::tuple([Expr::val(cursor.at), Expr::val(cursor.id)]))
}

impl Store {
    /// Runs, newest `started_at` first.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage, StoreError> {
        let mut select = Query::select();
        run_columns(&mut select)
            .from(AgentRuns::Table)
            .and_where_option(
                filter
                    .agent_name
                    .as_ref()
                    .map(|a| Expr::col(AgentRuns::AgentName).eq(a.as_str())),
            )
            .and_where_option(filter.run_key.map(|k| Expr::col(AgentRuns::RunKey).eq(k)))
            .and_where_option(
                filter
                    .status
                    .map(|s| Expr::col(AgentRuns::Status).eq(s.as_str())),
            )
            .and_where_option(filter.from.map(|t| Expr::col(AgentRuns::StartedAt).gte(t)))
            .and_where_option(filter.to.map(|t| Expr::col(AgentRuns::StartedAt).lt(t)))
            .and_where_option(
                filter
                    .cursor
                    .map(|c| before_cursor(AgentRuns::StartedAt, AgentRuns::Id, c)),
            )
            .order_by(AgentRuns::StartedAt, Order::Desc)
            .order_by(AgentRuns::Id, Order::Desc)
            .limit(filter.limit + 1);
        if let Some(access) = filter.access.condition(AgentRuns::AgentName) {
            select.cond_where(access);
        }
        let rows: Vec<RunRow> = self.fetch(&select).await?;
        let (runs, next_cursor) = paginate(rows, filter.limit, |r| Cursor {
            at: r.started_at,
            id: r.id,
        });
        Ok(RunPage {
            runs: runs
                .into_iter()
                .map(RunView::try_from)
                .collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// One run and its metrics, in the order they were reported.
    pub async fn get_run(&self, id: i64) -> Result<Option<RunDetail>, StoreError> {
        let mut select = Query::select();
        run_columns(&mut select)
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::Id).eq(id));
        let Some(row) = self.fetch::<RunRow, _>(&select).await?.pop() else {
            return Ok(None);
        };
        let mut select = Query::select();
        metric_columns(&mut select)
            .from(AgentMetrics::Table)
            .and_where(Expr::col(AgentMetrics::RunId).eq(id))
            .order_by(AgentMetrics::Id, Order::Asc);
        let metrics = self
            .fetch::<MetricRow, _>(&select)
            .await?
            .into_iter()
            .map(MetricPoint::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Some(RunDetail {
            run: row.try_into()?,
            metrics,
        }))
    }

    /// Metric values, newest `recorded_at` first.
    pub async fn list_metrics(&self, filter: &MetricFilter) -> Result<MetricPage, StoreError> {
        let mut select = Query::select();
        metric_columns(&mut select)
            .from(AgentMetrics::Table)
            .and_where_option(
                filter
                    .agent_name
                    .as_ref()
                    .map(|a| Expr::col(AgentMetrics::AgentName).eq(a.as_str())),
            )
            .and_where_option(
                filter
                    .metric_name
                    .as_ref()
                    .map(|m| Expr::col(AgentMetrics::MetricName).eq(m.as_str())),
            )
            .and_where_option(
                filter
                    .from
                    .map(|t| Expr::col(AgentMetrics::RecordedAt).gte(t)),
            )
            .and_where_option(filter.to.map(|t| Expr::col(AgentMetrics::RecordedAt).lt(t)))
            .and_where_option(
                filter
                    .cursor
                    .map(|c| before_cursor(AgentMetrics::RecordedAt, AgentMetrics::Id, c)),
            )
            .order_by(AgentMetrics::RecordedAt, Order::Desc)
            .order_by(AgentMetrics::Id, Order::Desc)
            .limit(filter.limit + 1);
        if let Some(access) = filter.access.condition(AgentMetrics::AgentName) {
            select.cond_where(access);
        }
        let rows: Vec<MetricRow> = self.fetch(&select).await?;
        let (rows, next_cursor) = paginate(rows, filter.limit, |m| Cursor {
            at: m.recorded_at,
            id: m.id,
        });
        Ok(MetricPage {
            metrics: rows
                .into_iter()
                .map(MetricPoint::try_from)
                .collect::<Result<_, _>>()?,
            next_cursor,
        })
    }
}

/// Splits the extra row fetched beyond `limit` off into a cursor for the next page.
fn paginate<T>(
    mut rows: Vec<T>,
    limit: u64,
    cursor_of: impl Fn(&T) -> Cursor,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|last| cursor_of(last).to_string());
        (rows, next)
    } else {
        (rows, None)
    }
}

/// A finished run, as the watcher compares an agent's latest runs.
#[derive(Debug, Clone, FromRow)]
pub struct RecentRun {
    pub status: String,
    pub error_message: Option<String>,
    pub duration_ms: Option<i64>,
    pub started_at: DateTime<Utc>,
}

impl Tx {
    /// The `started_at` of `agent`'s runs from `from` to `to` (both included), in order, at
    /// most `limit`.
    pub(crate) async fn run_starts(
        &mut self,
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
        let rows: Vec<(DateTime<Utc>,)> = self.fetch(&select).await?;
        Ok(rows.into_iter().map(|(at,)| at).collect())
    }

    /// `agent`'s latest `limit` finished runs, newest first; runs closed as overdue are left
    /// out (they are `overdue` incidents of their own).
    pub(crate) async fn recent_runs(
        &mut self,
        agent: &str,
        limit: u64,
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
            .limit(limit);
        self.fetch(&select).await
    }
}
