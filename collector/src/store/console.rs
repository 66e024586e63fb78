//! What the operator console reads beyond the API's own queries: each agent's latest run
//! durations (the overview's sparklines) and a metric's daily aggregates (the agent page's
//! charts). Both read indexes and summaries only, never a scan of raw metrics.

use std::collections::HashMap;

use chrono::NaiveDate;
use sea_query::{Expr, ExprTrait, Order, Query};
use sqlx::FromRow;

use super::schema::{AgentMetricDailySummaries as Daily, AgentRuns};
use super::{Pool, Store, StoreError};
use crate::domain::AgentName;

/// A finished run, as a sparkline draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunDot {
    pub duration_ms: i64,
    pub failed: bool,
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
struct DotRow {
    agent_name: String,
    duration_ms: Option<i64>,
    status: String,
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

/// The runs of `agent` a sparkline shows: finished ones, newest first, on the index of an
/// agent's runs by start.
const RECENT_RUNS_PG: &str = "select a.name as agent_name, r.duration_ms, r.status
     from unnest($1::text[]) as a(name)
     cross join lateral (
         select duration_ms, status from agent_runs
         where agent_name = a.name and status <> 'running'
         order by started_at desc, id desc limit $2
     ) r";

impl Store {
    /// Each agent's latest `per_agent` finished runs, newest first: one statement on
    /// PostgreSQL (a lateral join over the agents' index), one indexed read per agent on
    /// SQLite (in-process, each a few microseconds).
    pub async fn recent_runs(
        &self,
        agents: &[String],
        per_agent: u16,
    ) -> Result<HashMap<String, Vec<RunDot>>, StoreError> {
        let rows: Vec<DotRow> = match &self.pool {
            Pool::Postgres(pool) => {
                sqlx::query_as(RECENT_RUNS_PG)
                    .bind(agents)
                    .bind(i64::from(per_agent))
                    .fetch_all(pool)
                    .await?
            }
            Pool::Sqlite(_) => {
                let mut rows = Vec::new();
                for agent in agents {
                    let select = Query::select()
                        .columns([
                            AgentRuns::AgentName,
                            AgentRuns::DurationMs,
                            AgentRuns::Status,
                        ])
                        .from(AgentRuns::Table)
                        .and_where(Expr::col(AgentRuns::AgentName).eq(agent.as_str()))
                        .and_where(Expr::col(AgentRuns::Status).ne("running"))
                        .order_by(AgentRuns::StartedAt, Order::Desc)
                        .order_by(AgentRuns::Id, Order::Desc)
                        .limit(u64::from(per_agent))
                        .to_owned();
                    rows.extend(self.fetch::<DotRow, _>(&select).await?);
                }
                rows
            }
        };
        let mut dots: HashMap<String, Vec<RunDot>> = HashMap::new();
        for row in rows {
            dots.entry(row.agent_name).or_default().push(RunDot {
                duration_ms: row.duration_ms.unwrap_or(0),
                failed: row.status == "failed",
            });
        }
        Ok(dots)
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
