//! The write path: runs, their metrics and both daily aggregates in one transaction.

use std::collections::HashMap;

use sea_query::{Expr, ExprTrait, OnConflict, PostgresQueryBuilder, Query};
use sea_query_sqlx::SqlxBinder;
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use super::schema::{AgentMetrics, AgentRuns};
use super::{Store, is_unavailable};
use crate::domain::{NewRun, StoredValue};

/// PostgreSQL accepts at most 65 535 bind parameters per statement.
const RUNS_PER_STATEMENT: usize = 4_000; // × 11 columns
const METRICS_PER_STATEMENT: usize = 8_000; // × 6 columns

/// What happened to one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new run, with its id.
    Created(i64),
    /// Its `run_key` was stored before (or earlier in the same batch): nothing was written.
    Existing(i64),
}

impl Stored {
    pub fn run_id(self) -> i64 {
        match self {
            Self::Created(id) | Self::Existing(id) => id,
        }
    }
}

impl Store {
    /// Stores `runs` in one transaction and returns one outcome per run, in order.
    ///
    /// A run whose `run_key` is already stored — by an earlier request, a concurrent one, or an
    /// earlier element of `runs` — is not written again. Daily summaries count only new runs.
    pub async fn store_runs(&self, runs: &[NewRun]) -> Result<Vec<Stored>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let outcomes = store_runs_in(&mut tx, runs).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Like [`Store::store_runs`], one outcome per run, but a run the database refuses fails
    /// alone: when the shared transaction fails for any reason but the database being
    /// unavailable, each run is retried in a transaction of its own.
    pub async fn store_runs_isolated(&self, runs: &[NewRun]) -> Vec<Result<Stored, sqlx::Error>> {
        let err = match self.store_runs(runs).await {
            Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
            Err(err) => err,
        };
        if runs.len() == 1 {
            return vec![Err(err)];
        }
        if is_unavailable(&err) {
            tracing::warn!(error = %err, runs = runs.len(), "database unavailable: batch refused");
            // sqlx errors are not Clone; each run gets the same kind of error: a 503.
            return runs
                .iter()
                .map(|_| Err(sqlx::Error::PoolTimedOut))
                .collect();
        }
        tracing::warn!(error = %err, runs = runs.len(), "batch failed: storing its runs one by one");
        let mut outcomes = Vec::with_capacity(runs.len());
        for run in runs {
            outcomes.push(
                self.store_runs(std::slice::from_ref(run))
                    .await
                    .and_then(|mut stored| stored.pop().ok_or(sqlx::Error::RowNotFound)),
            );
        }
        outcomes
    }
}

async fn store_runs_in(
    conn: &mut PgConnection,
    runs: &[NewRun],
) -> Result<Vec<Stored>, sqlx::Error> {
    // The first report with a given key is the one written; later ones in the batch repeat it.
    let mut first_with_key: HashMap<Uuid, usize> = HashMap::with_capacity(runs.len());
    let unique: Vec<&NewRun> = runs
        .iter()
        .enumerate()
        .filter(|(i, run)| *first_with_key.entry(run.run_key).or_insert(*i) == *i)
        .map(|(_, run)| run)
        .collect();

    let mut created: HashMap<Uuid, i64> = HashMap::with_capacity(unique.len());
    for chunk in unique.chunks(RUNS_PER_STATEMENT) {
        created.extend(insert_runs(conn, chunk).await?);
    }

    // Keys that were not inserted belong to runs stored before; ON CONFLICT waited for any
    // concurrent writer of the same key to commit, so this read sees them.
    let existing_keys: Vec<Uuid> = unique
        .iter()
        .map(|run| run.run_key)
        .filter(|key| !created.contains_key(key))
        .collect();
    let existing: HashMap<Uuid, i64> = if existing_keys.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (Uuid, i64)>(
            "select run_key, id from agent_runs where run_key = any($1)",
        )
        .bind(&existing_keys)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };

    let new_runs: Vec<(i64, &NewRun)> = unique
        .iter()
        .filter_map(|run| created.get(&run.run_key).map(|id| (*id, *run)))
        .collect();
    let metric_rows: Vec<(i64, &NewRun, usize)> = new_runs
        .iter()
        .flat_map(|(id, run)| (0..run.metrics.len()).map(move |m| (*id, *run, m)))
        .collect();
    for chunk in metric_rows.chunks(METRICS_PER_STATEMENT) {
        insert_metrics(conn, chunk).await?;
    }

    if !new_runs.is_empty() {
        let ids: Vec<i64> = new_runs.iter().map(|(id, _)| *id).collect();
        sqlx::query(UPSERT_DAILY_SUMMARIES)
            .bind(&ids)
            .execute(&mut *conn)
            .await?;
        if !metric_rows.is_empty() {
            sqlx::query(UPSERT_METRIC_DAILY_SUMMARIES)
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
        }
    }

    runs.iter()
        .enumerate()
        .map(|(i, run)| {
            let is_first = first_with_key.get(&run.run_key) == Some(&i);
            match (created.get(&run.run_key), existing.get(&run.run_key)) {
                (Some(id), _) if is_first => Ok(Stored::Created(*id)),
                (Some(id), _) | (None, Some(id)) => Ok(Stored::Existing(*id)),
                // Cannot happen (ON CONFLICT waits for the other writer); an internal error if so.
                (None, None) => Err(sqlx::Error::RowNotFound),
            }
        })
        .collect()
}

async fn insert_runs(
    conn: &mut PgConnection,
    runs: &[&NewRun],
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let mut insert = Query::insert();
    insert.into_table(AgentRuns::Table).columns([
        AgentRuns::RunKey,
        AgentRuns::AgentName,
        AgentRuns::StartedAt,
        AgentRuns::FinishedAt,
        AgentRuns::Status,
        AgentRuns::ErrorMessage,
        AgentRuns::DurationMs,
        AgentRuns::Trigger,
        AgentRuns::ScheduledFor,
        AgentRuns::Host,
        AgentRuns::MetricCount,
    ]);
    for run in runs {
        insert
            .values([
                run.run_key.into(),
                run.agent_name.as_str().into(),
                run.started_at.into(),
                run.finished_at.into(),
                run.status.as_str().into(),
                run.error_message.clone().into(),
                run.duration_ms().into(),
                run.trigger.as_str().into(),
                run.scheduled_for.into(),
                run.host.clone().into(),
                i32::try_from(run.metrics.len()).unwrap_or(i32::MAX).into(),
            ])
            .map_err(|e| sqlx::Error::Encode(e.into()))?;
    }
    insert
        .on_conflict(
            OnConflict::column(AgentRuns::RunKey)
                .do_nothing()
                .to_owned(),
        )
        .returning(Query::returning().columns([AgentRuns::RunKey, AgentRuns::Id]));
    let (sql, values) = insert.build_sqlx(PostgresQueryBuilder);
    sqlx::query_as_with::<_, (Uuid, i64), _>(AssertSqlSafe(sql), values)
        .fetch_all(conn)
        .await
}

async fn insert_metrics(
    conn: &mut PgConnection,
    rows: &[(i64, &NewRun, usize)],
) -> Result<(), sqlx::Error> {
    let mut insert = Query::insert();
    insert.into_table(AgentMetrics::Table).columns([
        AgentMetrics::RunId,
        AgentMetrics::AgentName,
        AgentMetrics::MetricName,
        AgentMetrics::MetricValue,
        AgentMetrics::MetricText,
        AgentMetrics::RecordedAt,
    ]);
    for (run_id, run, index) in rows {
        let metric = &run.metrics[*index];
        let (numeric, text) = match &metric.value {
            StoredValue::Numeric(literal) => (Some(literal.clone()), None),
            StoredValue::Text(text) => (None, Some(text.clone())),
        };
        insert
            .values([
                (*run_id).into(),
                run.agent_name.as_str().into(),
                metric.name.clone().into(),
                // Sent as text and cast by PostgreSQL, so the decimal is stored exactly.
                Expr::val(numeric).cast_as("numeric"),
                text.into(),
                run.finished_at.into(),
            ])
            .map_err(|e| sqlx::Error::Encode(e.into()))?;
    }
    let (sql, values) = insert.build_sqlx(PostgresQueryBuilder);
    sqlx::query_with(AssertSqlSafe(sql), values)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds the runs with ids `$1` to their agent's summary for the UTC day they started.
/// Rows are upserted in key order, so concurrent batches cannot deadlock on them.
const UPSERT_DAILY_SUMMARIES: &str = r#"
insert into agent_daily_summaries as s
    (agent_name, day, run_count, success_count, failure_count, total_duration_ms,
     min_duration_ms, max_duration_ms, last_run_at, last_status, last_success_at)
select agent_name,
       (started_at at time zone 'UTC')::date,
       count(*),
       count(*) filter (where status = 'success'),
       count(*) filter (where status = 'failed'),
       coalesce(sum(duration_ms), 0),
       min(duration_ms),
       max(duration_ms),
       max(started_at),
       (array_agg(status order by started_at desc, id desc))[1],
       max(started_at) filter (where status = 'success')
from agent_runs
where id = any($1)
group by 1, 2
order by 1, 2
on conflict (agent_name, day) do update set
    run_count         = s.run_count + excluded.run_count,
    success_count     = s.success_count + excluded.success_count,
    failure_count     = s.failure_count + excluded.failure_count,
    total_duration_ms = s.total_duration_ms + excluded.total_duration_ms,
    min_duration_ms   = least(s.min_duration_ms, excluded.min_duration_ms),
    max_duration_ms   = greatest(s.max_duration_ms, excluded.max_duration_ms),
    last_status       = case when excluded.last_run_at >= s.last_run_at
                             then excluded.last_status else s.last_status end,
    last_run_at       = greatest(s.last_run_at, excluded.last_run_at),
    last_success_at   = greatest(s.last_success_at, excluded.last_success_at),
    updated_at        = now()
"#;

/// Adds the numeric metrics of the runs with ids `$1` to the per-metric daily aggregates.
const UPSERT_METRIC_DAILY_SUMMARIES: &str = r#"
insert into agent_metric_daily_summaries as s
    (agent_name, metric_name, day, value_count, value_sum, value_min, value_max,
     last_value, last_recorded_at)
select agent_name,
       metric_name,
       (recorded_at at time zone 'UTC')::date,
       count(*),
       sum(metric_value),
       min(metric_value),
       max(metric_value),
       (array_agg(metric_value order by recorded_at desc, id desc))[1],
       max(recorded_at)
from agent_metrics
where run_id = any($1) and metric_value is not null
group by 1, 2, 3
order by 1, 2, 3
on conflict (agent_name, metric_name, day) do update set
    value_count      = s.value_count + excluded.value_count,
    value_sum        = s.value_sum + excluded.value_sum,
    value_min        = least(s.value_min, excluded.value_min),
    value_max        = greatest(s.value_max, excluded.value_max),
    last_value       = case when excluded.last_recorded_at >= s.last_recorded_at
                            then excluded.last_value else s.last_value end,
    last_recorded_at = greatest(s.last_recorded_at, excluded.last_recorded_at),
    updated_at       = now()
"#;
