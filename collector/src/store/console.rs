//! What the operator console reads beyond the API's own queries: each agent's recent days
//! (the overview's sparklines) and a metric's daily aggregates (the agent page's charts). Both
//! read summaries only, never raw runs or metrics.

use std::collections::HashMap;

use chrono::NaiveDate;
use sea_query::{Expr, ExprTrait, Order, Query};
use sqlx::FromRow;

use super::reads::AgentAccess;
use super::schema::{AgentDailySummaries as Days, AgentMetricDailySummaries as Daily};
use super::{Store, StoreError};
use crate::domain::AgentName;

/// An agent's runs on one UTC day, as a sparkline draws them (from `agent_daily_summaries`).
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

/// One numeric metric on one UTC day, from `agent_metric_daily_summaries`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDay {
    pub metric_name: String,
    pub day: NaiveDate,
    pub count: i64,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
}

#[derive(FromRow)]
struct AgentDay {
    agent_name: String,
    #[sqlx(flatten)]
    day: RunDay,
}

#[derive(FromRow)]
struct DayRow {
    metric_name: String,
    day: NaiveDate,
    value_count: i64,
    value_sum: String,
    value_min: String,
    value_max: String,
}

impl Store {
    /// Each visible agent's days with runs from `from` on, oldest first: one range of the
    /// summaries' day index (1 000 agents over 14 days: 14 000 small rows).
    pub async fn run_days(
        &self,
        from: NaiveDate,
        access: &AgentAccess,
    ) -> Result<HashMap<String, Vec<RunDay>>, StoreError> {
        let mut select = Query::select();
        select
            .columns([
                Days::AgentName,
                Days::Day,
                Days::RunCount,
                Days::FailureCount,
                Days::TotalDurationMs,
            ])
            .from(Days::Table)
            .and_where(Expr::col(Days::Day).gte(from))
            .order_by(Days::Day, Order::Asc);
        if let Some(access) = access.condition(Days::AgentName) {
            select.cond_where(access);
        }
        let mut days: HashMap<String, Vec<RunDay>> = HashMap::new();
        for row in self.fetch::<AgentDay, _>(&select).await? {
            days.entry(row.agent_name).or_default().push(row.day);
        }
        Ok(days)
    }

    /// The agent's numeric metrics per day from `from` on, by metric then day.
    pub async fn metric_days(
        &self,
        agent: &AgentName,
        from: NaiveDate,
    ) -> Result<Vec<MetricDay>, StoreError> {
        // NUMERIC on PostgreSQL, TEXT on SQLite: read as text on both, exactly as stored.
        let text = |column: Daily| Expr::col(column).cast_as("text");
        let select = Query::select()
            .columns([Daily::MetricName, Daily::Day, Daily::ValueCount])
            .expr_as(text(Daily::ValueSum), "value_sum")
            .expr_as(text(Daily::ValueMin), "value_min")
            .expr_as(text(Daily::ValueMax), "value_max")
            .from(Daily::Table)
            .and_where(Expr::col(Daily::AgentName).eq(agent.as_str()))
            .and_where(Expr::col(Daily::Day).gte(from))
            .order_by(Daily::MetricName, Order::Asc)
            .order_by(Daily::Day, Order::Asc)
            .to_owned();
        let rows: Vec<DayRow> = self.fetch(&select).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
                let sum = number(&row.value_sum)?;
                Some(MetricDay {
                    avg: sum / Ord::max(row.value_count, 1) as f64,
                    min: number(&row.value_min)?,
                    max: number(&row.value_max)?,
                    count: row.value_count,
                    day: row.day,
                    metric_name: row.metric_name,
                })
            })
            .collect())
    }
}
