//! A metric's daily aggregates, as the console's charts read them: from the summaries, never
//! raw metrics. The overview's sparklines are the days `Store::agents_overview_with_days` reads.

use chrono::NaiveDate;
use sea_query::{Expr, ExprTrait, Order, Query};
use sqlx::FromRow;

use crate::domain::AgentName;
use crate::store::tables::AgentMetricDailySummaries as Daily;
use crate::store::{Store, StoreError};

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
struct DayRow {
    metric_name: String,
    day: NaiveDate,
    value_count: i64,
    value_sum: String,
    value_min: String,
    value_max: String,
}

impl Store {
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
