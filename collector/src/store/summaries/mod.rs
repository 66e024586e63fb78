//! The daily summaries as they are read: the agents' overview, their days, `GET /summaries`.
//! (They are written with the runs: `runs/`; their rules: docs/architecture.md.)

mod changes;
mod metric_days;
mod recount;

pub use changes::{KNOWN_BY_NAME, LastTimes, SummaryChange, SummaryChanges};
pub use metric_days::MetricDay;
pub(super) use recount::Counted;

use agent_sdk::wire::{AgentOverview, AgentState, DailySummary, RunStatus};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{HashMap, HashSet};

use sea_query::{Alias, Expr, ExprTrait, JoinType, Order, Query};
use sqlx::FromRow;

use super::error::parse_status;
use super::tables::{AgentDailySummaries, AgentExpectations, AgentRuns, Agents};
use super::{AgentAccess, Store, StoreError};
use crate::domain::AgentName;

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

impl Store {
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
        let (latest, expected, open, days) = tokio::try_join!(
            self.agents_latest(access),
            self.expected_agents(access),
            self.open_incident_kinds(),
            self.run_days(Ord::min(from, week_start), access),
        )?;
        let incidents_of = |agent: &str| {
            let mut incidents = open.get(agent).cloned().unwrap_or_default();
            incidents.sort_by_key(|k| k.as_str());
            incidents
        };
        // Expected and never finished a run: there from the moment it is expected, in the
        // state its open incidents say (`missed`, `stale`: "it never ran"), else `new`.
        let ran: HashSet<&str> = latest.iter().map(|row| row.agent_name.as_str()).collect();
        let never_ran: Vec<AgentOverview> = expected
            .into_iter()
            .filter(|agent| !ran.contains(agent.as_str()))
            .map(|agent_name| {
                let incidents = incidents_of(&agent_name);
                AgentOverview {
                    state: AgentState::of_expected(&incidents, false),
                    incidents,
                    agent_name,
                    last_run_at: None,
                    last_status: None,
                    last_success_at: None,
                    runs_today: 0,
                    failures_today: 0,
                    runs_7d: 0,
                    failures_7d: 0,
                    running: 0,
                    running_since: None,
                }
            })
            .collect();
        let mut overviews: Vec<AgentOverview> = latest
            .into_iter()
            .map(|row| {
                let incidents = incidents_of(&row.agent_name);
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
                    last_status: Some(parse_status(&row.last_status)?),
                    agent_name: row.agent_name,
                    last_run_at: Some(row.last_run_at),
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
        overviews.extend(never_ran);
        overviews.sort_by(|a, b| a.agent_name.cmp(&b.agent_name));
        Ok((overviews, days))
    }

    /// The agents with an expectation the caller may see, by name.
    async fn expected_agents(&self, access: &AgentAccess) -> Result<Vec<String>, StoreError> {
        let mut select = Query::select();
        select
            .distinct()
            .column(AgentExpectations::AgentName)
            .from(AgentExpectations::Table)
            .order_by(AgentExpectations::AgentName, Order::Asc);
        if let Some(access) = access.condition(AgentExpectations::AgentName) {
            select.cond_where(access);
        }
        let rows: Vec<(String,)> = self.fetch(&select).await?;
        Ok(rows.into_iter().map(|(name,)| name).collect())
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
