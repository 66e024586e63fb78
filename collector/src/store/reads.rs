//! The read endpoints' queries, built with sea-query from the request's filters.

use agent_sdk::wire::{
    AgentOverview, AgentState, DailySummary, IncidentKind, MetricPage, MetricPoint, MetricValue,
    Number, RunDetail, RunPage, RunStatus, RunTrigger, RunView,
};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashMap;

use sea_query::{Alias, Condition, Expr, ExprTrait, Func, JoinType, Order, Query, SelectStatement};
use sqlx::FromRow;
use uuid::Uuid;

use super::schema::{AgentDailySummaries, AgentMetrics, AgentRuns, Agents};
use super::{Store, StoreError};
use crate::domain::{AgentName, AgentPattern, Cursor, MetricName};

/// Which agents a caller may see: every agent, or those matching the token's patterns.
#[derive(Debug, Clone, Default)]
pub struct AgentAccess(Option<Vec<AgentPattern>>);

impl AgentAccess {
    pub fn new(patterns: Option<&[AgentPattern]>) -> Self {
        Self(patterns.map(<[AgentPattern]>::to_vec))
    }

    /// The SQL condition on `column`, or `None` when every agent is visible.
    pub(super) fn condition<C>(&self, column: C) -> Option<Condition>
    where
        C: sea_query::IntoColumnRef + Copy,
    {
        let patterns = self.0.as_ref()?;
        let mut any = Condition::any();
        for pattern in patterns {
            any = any.add(match pattern {
                AgentPattern::Exact(name) => Expr::col(column).eq(name.as_str()),
                // `substr`, not LIKE: no wildcards to escape, and case-sensitive on SQLite too.
                AgentPattern::Prefix(prefix) => Expr::from(
                    Func::cust("substr")
                        .arg(Expr::col(column))
                        .arg(1)
                        .arg(i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX)),
                )
                .eq(prefix.as_str()),
            });
        }
        // An empty list allows nothing.
        Some(if patterns.is_empty() {
            Condition::all().add(Expr::cust("1 = 0"))
        } else {
            any
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub agent_name: Option<AgentName>,
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

#[derive(Debug, Clone)]
pub struct SummaryFilter {
    pub agent_name: Option<AgentName>,
    /// Inclusive.
    pub from: NaiveDate,
    /// Inclusive.
    pub to: NaiveDate,
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

#[derive(FromRow)]
struct AgentRow {
    agent_name: String,
    last_run_at: DateTime<Utc>,
    last_status: String,
    last_success_at: Option<DateTime<Utc>>,
    running: i64,
    running_since: Option<DateTime<Utc>>,
}

/// An agent's runs on one UTC day (from `agent_daily_summaries`): the overview's counts and
/// the console's sparklines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct RunDay {
    pub day: NaiveDate,
    #[sqlx(rename = "run_count")]
    pub runs: i64,
    #[sqlx(rename = "failure_count")]
    pub failures: i64,
    #[sqlx(rename = "total_duration_ms")]
    pub total_ms: i64,
}

impl RunDay {
    /// The day's mean run duration.
    pub fn mean_ms(&self) -> i64 {
        self.total_ms / Ord::max(self.runs, 1)
    }
}

#[derive(FromRow)]
struct AgentDay {
    agent_name: String,
    #[sqlx(flatten)]
    day: RunDay,
}

#[derive(FromRow)]
struct SummaryRow {
    agent_name: String,
    day: NaiveDate,
    run_count: i64,
    success_count: i64,
    failure_count: i64,
    total_duration_ms: i64,
    min_duration_ms: Option<i64>,
    max_duration_ms: Option<i64>,
    last_run_at: DateTime<Utc>,
    last_status: String,
    last_success_at: Option<DateTime<Utc>>,
}

fn decode_error(message: String) -> StoreError {
    StoreError::internal("reading a stored row", message)
}

fn parse_status(status: &str) -> Result<RunStatus, StoreError> {
    RunStatus::parse(status).ok_or_else(|| decode_error(format!("unknown run status {status:?}")))
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

    /// Per agent: its last run, last success, and run and failure counts today and over the
    /// last seven UTC days (today included), its running runs and open incidents.
    pub async fn agents_overview(
        &self,
        today: NaiveDate,
        access: &AgentAccess,
    ) -> Result<Vec<AgentOverview>, StoreError> {
        Ok(self
            .agents_overview_with_days(today, today, access)
            .await?
            .0)
    }

    /// [`Store::agents_overview`], and each agent's days with runs from `from` on (or from the
    /// first of the seven days, when that is earlier), the days the counts are summed from. One
    /// row per agent from `agents` with its running runs (their partial index), the open
    /// incidents, and one range of the summaries' day index ([`Store::run_days`]), read at
    /// once: never a read of every day.
    pub async fn agents_overview_with_days(
        &self,
        today: NaiveDate,
        from: NaiveDate,
        access: &AgentAccess,
    ) -> Result<(Vec<AgentOverview>, HashMap<String, Vec<RunDay>>), StoreError> {
        let week_start = today - chrono::Days::new(6);
        let (latest, open, days) = tokio::try_join!(
            self.agents_latest(access),
            self.open_incident_kinds(),
            self.run_days(Ord::min(from, week_start), access),
        )?;
        let overviews = latest
            .into_iter()
            .map(|row| {
                let mut incidents = open.get(&row.agent_name).cloned().unwrap_or_default();
                incidents.sort_by_key(|k| k.as_str());
                let (mut runs_today, mut failures_today, mut runs_7d, mut failures_7d) =
                    (0, 0, 0, 0);
                for day in days.get(&row.agent_name).into_iter().flatten() {
                    if day.day >= week_start {
                        runs_7d += day.runs;
                        failures_7d += day.failures;
                    }
                    if day.day == today {
                        runs_today += day.runs;
                        failures_today += day.failures;
                    }
                }
                Ok(AgentOverview {
                    state: AgentState::of(&incidents, row.running > 0),
                    incidents,
                    last_status: parse_status(&row.last_status)?,
                    agent_name: row.agent_name,
                    last_run_at: row.last_run_at,
                    last_success_at: row.last_success_at,
                    runs_today,
                    failures_today,
                    runs_7d,
                    failures_7d,
                    running: row.running,
                    running_since: row.running_since,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((overviews, days))
    }

    /// Each visible agent's row of `agents` with its runs `running` now (POST /runs).
    async fn agents_latest(&self, access: &AgentAccess) -> Result<Vec<AgentRow>, StoreError> {
        let running = Alias::new("running_now");
        let running_now = Query::select()
            .column(AgentRuns::AgentName)
            .expr_as(Expr::col(AgentRuns::Id).count(), "running")
            .expr_as(Expr::col(AgentRuns::StartedAt).min(), "running_since")
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::Status).eq(RunStatus::Running.as_str()))
            .group_by_col(AgentRuns::AgentName)
            .take();
        let mut select = Query::select();
        select
            .columns([
                (Agents::Table, Agents::AgentName),
                (Agents::Table, Agents::LastRunAt),
                (Agents::Table, Agents::LastStatus),
                (Agents::Table, Agents::LastSuccessAt),
            ])
            .expr_as(
                Expr::col((running.clone(), Alias::new("running"))).if_null(0),
                "running",
            )
            .expr_as(
                Expr::col((running.clone(), Alias::new("running_since"))),
                "running_since",
            )
            .from(Agents::Table)
            .join_subquery(
                JoinType::LeftJoin,
                running_now,
                running.clone(),
                Expr::col((running, AgentRuns::AgentName))
                    .equals((Agents::Table, Agents::AgentName)),
            )
            .order_by((Agents::Table, Agents::AgentName), Order::Asc);
        if let Some(access) = access.condition((Agents::Table, Agents::AgentName)) {
            select.cond_where(access);
        }
        self.fetch(&select).await
    }

    /// The kinds of each agent's open incidents.
    async fn open_incident_kinds(&self) -> Result<HashMap<String, Vec<IncidentKind>>, StoreError> {
        let mut open: HashMap<String, Vec<IncidentKind>> = HashMap::new();
        for (agent, kind) in self
            .fetch::<(String, String), _>(&super::expect::open_incidents())
            .await?
        {
            if let Some(kind) = IncidentKind::parse(&kind) {
                open.entry(agent).or_default().push(kind);
            }
        }
        Ok(open)
    }

    /// Each visible agent's days with runs from `from` on, oldest first: one range of the
    /// summaries' day index (1 000 agents over 14 days: 14 000 small rows). Not
    /// [`Store::daily_summaries`] (`GET /summaries`): its twelve columns, timestamps and
    /// ordering made the overview of 1 000 agents 53 ms instead of 31 (bench/console.sh).
    pub async fn run_days(
        &self,
        from: NaiveDate,
        access: &AgentAccess,
    ) -> Result<HashMap<String, Vec<RunDay>>, StoreError> {
        let mut select = Query::select();
        select
            .columns([
                AgentDailySummaries::AgentName,
                AgentDailySummaries::Day,
                AgentDailySummaries::RunCount,
                AgentDailySummaries::FailureCount,
                AgentDailySummaries::TotalDurationMs,
            ])
            .from(AgentDailySummaries::Table)
            .and_where(Expr::col(AgentDailySummaries::Day).gte(from))
            .order_by(AgentDailySummaries::Day, Order::Asc);
        if let Some(access) = access.condition(AgentDailySummaries::AgentName) {
            select.cond_where(access);
        }
        let mut days: HashMap<String, Vec<RunDay>> = HashMap::new();
        for row in self.fetch::<AgentDay, _>(&select).await? {
            days.entry(row.agent_name).or_default().push(row.day);
        }
        Ok(days)
    }

    /// Daily summaries in a date range, newest day first.
    pub async fn daily_summaries(
        &self,
        filter: &SummaryFilter,
    ) -> Result<Vec<DailySummary>, StoreError> {
        let mut select = Query::select();
        select
            .columns([
                AgentDailySummaries::AgentName,
                AgentDailySummaries::Day,
                AgentDailySummaries::RunCount,
                AgentDailySummaries::SuccessCount,
                AgentDailySummaries::FailureCount,
                AgentDailySummaries::TotalDurationMs,
                AgentDailySummaries::MinDurationMs,
                AgentDailySummaries::MaxDurationMs,
            ])
            .columns([
                AgentDailySummaries::LastRunAt,
                AgentDailySummaries::LastStatus,
                AgentDailySummaries::LastSuccessAt,
            ])
            .from(AgentDailySummaries::Table)
            .and_where(Expr::col(AgentDailySummaries::Day).gte(filter.from))
            .and_where(Expr::col(AgentDailySummaries::Day).lte(filter.to))
            .and_where_option(
                filter
                    .agent_name
                    .as_ref()
                    .map(|a| Expr::col(AgentDailySummaries::AgentName).eq(a.as_str())),
            )
            .order_by(AgentDailySummaries::Day, Order::Desc)
            .order_by(AgentDailySummaries::AgentName, Order::Asc);
        if let Some(access) = filter.access.condition(AgentDailySummaries::AgentName) {
            select.cond_where(access);
        }
        self.fetch::<SummaryRow, _>(&select)
            .await?
            .into_iter()
            .map(|row| {
                Ok(DailySummary {
                    agent_name: row.agent_name,
                    day: row.day,
                    run_count: row.run_count,
                    success_count: row.success_count,
                    failure_count: row.failure_count,
                    total_duration_ms: row.total_duration_ms,
                    min_duration_ms: row.min_duration_ms,
                    max_duration_ms: row.max_duration_ms,
                    avg_duration_ms: (row.run_count > 0)
                        .then(|| row.total_duration_ms as f64 / row.run_count as f64),
                    last_run_at: row.last_run_at,
                    last_status: parse_status(&row.last_status)?,
                    last_success_at: row.last_success_at,
                })
            })
            .collect()
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
