//! The write on SQLite, which has neither arrays, data-modifying CTEs nor a decimal type:
//! several statements in one transaction, the per-metric sums in exact decimals computed here
//! ([`MetricDay`]).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sea_query::{Expr, InsertStatement, OnConflict, Query, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::metric_day::MetricDay;
use super::{Written, metric_columns};
use crate::domain::{NewRun, StoredValue};
use crate::store::StoreError;
use crate::store::tables::{AgentMetricDailySummaries, AgentMetrics, AgentRuns};

/// Rows per multi-row INSERT, well under its 32 766 bound parameters per statement.
const RUNS_PER_INSERT: usize = 500;
const METRICS_PER_INSERT: usize = 1000;

/// Writes the runs of `runs` whose `run_key` is new for their agent or whose run is `running` (started by
/// `POST /runs`: completed now), their metrics and both daily aggregates, in one
/// `BEGIN IMMEDIATE` transaction (the write lock taken up front, so that the busy timeout
/// applies): the runs (multi-row INSERT … ON CONFLICT DO UPDATE … WHERE running, RETURNING), their
/// metrics, the daily summaries aggregated by SQLite from the runs just inserted
/// ([`DAILY_SUMMARIES`]) and each agent's latest run ([`AGENTS`]), and the per-metric
/// aggregates in exact decimals
/// ([`merge_metric_days`]). Returns each run written.
pub(in crate::store) async fn insert_new(
    pool: &SqlitePool,
    runs: &[&NewRun],
) -> Result<Vec<Written>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let created = write(&mut tx, runs).await?;
    tx.commit().await?;
    Ok(created)
}

/// [`insert_new`]'s writes, in the caller's transaction.
pub(in crate::store) async fn write(
    tx: &mut SqliteConnection,
    runs: &[&NewRun],
) -> Result<Vec<Written>, StoreError> {
    let mut created: Vec<Written> = Vec::with_capacity(runs.len());
    for chunk in runs.chunks(RUNS_PER_INSERT) {
        let (sql, values) = insert_runs(chunk)?.build_sqlx(SqliteQueryBuilder);
        created.extend(
            sqlx::query_as_with::<_, Written, _>(AssertSqlSafe(sql), values)
                .fetch_all(&mut *tx)
                .await?,
        );
    }
    if created.is_empty() {
        return Ok(created);
    }

    let ids: HashMap<(&str, Uuid), i64> = created
        .iter()
        .map(|(key, agent, id)| ((agent.as_str(), *key), *id))
        .collect();
    // In report order, each run's metrics in the order sent: ids grow as they were reported.
    let metrics: Vec<_> = runs
        .iter()
        .filter_map(|run| {
            ids.get(&(run.agent_name.as_str(), run.run_key))
                .map(|id| (*id, *run))
        })
        .flat_map(|(id, run)| run.metrics.iter().map(move |metric| (id, run, metric)))
        .collect();
    for chunk in metrics.chunks(METRICS_PER_INSERT) {
        let mut insert = Query::insert();
        insert.into_table(AgentMetrics::Table).columns([
            AgentMetrics::RunId,
            AgentMetrics::AgentName,
            AgentMetrics::MetricName,
            AgentMetrics::MetricValue,
            AgentMetrics::MetricText,
            AgentMetrics::RecordedAt,
        ]);
        for (id, run, metric) in chunk {
            let (number, text) = metric_columns(metric);
            insert
                .values([
                    (*id).into(),
                    run.agent_name.as_str().into(),
                    metric.name.as_str().into(),
                    number.into(),
                    text.into(),
                    run.finished_at.into(),
                ])
                .map_err(statement_error)?;
        }
        execute(&mut *tx, &insert).await?;
    }

    // The new runs' ids as one JSON array: the statements stay the same whatever the batch.
    let new_ids = serde_json::to_string(&created.iter().map(|(_, _, id)| *id).collect::<Vec<_>>())
        .map_err(json_error)?;
    count_runs_json(&mut *tx, &new_ids, true, true).await?;
    // The per-metric aggregates of the numeric metrics, in report order.
    let mut days: BTreeMap<(&str, &str, NaiveDate), MetricDay> = BTreeMap::new();
    for (_, run, metric) in &metrics {
        if let StoredValue::Numeric(value) = &metric.value {
            let key = (
                run.agent_name.as_str(),
                metric.name.as_str(),
                run.finished_at.date_naive(),
            );
            let value = MetricDay::of(value, run.finished_at)?;
            match days.entry(key) {
                Entry::Vacant(entry) => {
                    entry.insert(value);
                }
                Entry::Occupied(mut entry) => entry.get_mut().merge(value),
            }
        }
    }
    let mut days = days.into_iter().peekable();
    while days.peek().is_some() {
        let chunk = days.by_ref().take(METRIC_DAYS_PER_STATEMENT).collect();
        merge_metric_days(&mut *tx, chunk).await?;
    }
    Ok(created)
}

fn insert_runs(runs: &[&NewRun]) -> Result<InsertStatement, StoreError> {
    let mut insert = Query::insert();
    insert
        .into_table(AgentRuns::Table)
        .columns([
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
        ])
        // A `running` row (POST /runs) is completed by its report; any other row with the
        // agent's key is left alone (as in sql/postgres/insert_runs.sql).
        .on_conflict(
            OnConflict::columns([AgentRuns::RunKey, AgentRuns::AgentName])
                .update_columns([
                    AgentRuns::StartedAt,
                    AgentRuns::FinishedAt,
                    AgentRuns::Status,
                    AgentRuns::ErrorMessage,
                    AgentRuns::DurationMs,
                    AgentRuns::MetricCount,
                ])
                .values([
                    (
                        AgentRuns::ScheduledFor,
                        Expr::cust("coalesce(excluded.scheduled_for, agent_runs.scheduled_for)"),
                    ),
                    (
                        AgentRuns::Host,
                        Expr::cust("coalesce(excluded.host, agent_runs.host)"),
                    ),
                    (AgentRuns::ReceivedAt, Expr::cust(SQLITE_NOW)),
                ])
                .action_and_where(Expr::cust("agent_runs.status = 'running'"))
                .to_owned(),
        )
        .returning(Query::returning().columns([
            AgentRuns::RunKey,
            AgentRuns::AgentName,
            AgentRuns::Id,
        ]));
    for run in runs {
        insert
            .values([
                run.run_key.into(),
                run.agent_name.as_str().into(),
                run.started_at.into(),
                run.finished_at.into(),
                run.status.as_str().into(),
                run.error_message.as_deref().into(),
                run.duration_ms().into(),
                run.trigger.as_str().into(),
                run.scheduled_for.into(),
                run.host.as_deref().into(),
                run.metric_count().into(),
            ])
            .map_err(statement_error)?;
    }
    Ok(insert)
}

fn statement_error(err: sea_query::error::Error) -> StoreError {
    StoreError::internal("building an insert", err)
}

fn json_error(err: serde_json::Error) -> StoreError {
    StoreError::internal("encoding the statement's JSON parameter", err)
}

/// `sql/sqlite/daily_summaries.sql`: the daily summaries of the runs `?1` lists, merged into
/// the stored ones (the summary rules per day, written once).
const DAILY_SUMMARIES: &str = include_str!("../sql/sqlite/daily_summaries.sql");

/// `sql/sqlite/agents.sql`: each agent's latest run and success, from the runs `?1` lists,
/// merged into its row of `agents`.
const AGENTS: &str = include_str!("../sql/sqlite/agents.sql");

/// Now, as SQLite writes `updated_at` (the schema's default).
const SQLITE_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// `sql/sqlite/stored_metric_days.sql`: the stored aggregates of the (agent, metric, day) keys
/// `?1` lists.
const STORED_METRIC_DAYS: &str = include_str!("../sql/sqlite/stored_metric_days.sql");

/// Metric days written per upsert: nine parameters each.
const METRIC_DAYS_PER_STATEMENT: usize = 1000;

type MetricDayKey<'a> = (&'a str, &'a str, NaiveDate);

/// Merges each (agent, metric, day) aggregate of a batch into its stored row: the PostgreSQL
/// statement's `metric_daily` step for SQLite. The stored rows are read in one statement
/// ([`STORED_METRIC_DAYS`]), merged in exact decimals ([`MetricDay`]) and written back in one
/// upsert, under the transaction's write lock.
async fn merge_metric_days(
    conn: &mut SqliteConnection,
    batch: Vec<(MetricDayKey<'_>, MetricDay)>,
) -> Result<(), StoreError> {
    use AgentMetricDailySummaries as S;
    const KEY: [S; 3] = [S::AgentName, S::MetricName, S::Day];
    const AGGREGATE: [S; 6] = [
        S::ValueCount,
        S::ValueSum,
        S::ValueMin,
        S::ValueMax,
        S::LastValue,
        S::LastRecordedAt,
    ];
    let keys = serde_json::to_string(
        &batch
            .iter()
            .map(|((agent, metric, day), _)| (agent, metric, day))
            .collect::<Vec<_>>(),
    )
    .map_err(json_error)?;
    type Row = (
        String,
        String,
        NaiveDate,
        i64,
        String,
        String,
        String,
        String,
        DateTime<Utc>,
    );
    let mut stored: HashMap<(String, String, NaiveDate), MetricDay> = HashMap::new();
    for (agent, metric, day, count, sum, min, max, last, last_at) in
        sqlx::query_as::<_, Row>(STORED_METRIC_DAYS)
            .bind(keys)
            .fetch_all(&mut *conn)
            .await?
    {
        let aggregate = MetricDay::stored(count, &sum, &min, &max, last, last_at)?;
        stored.insert((agent, metric, day), aggregate);
    }

    let mut upsert = Query::insert();
    upsert
        .into_table(S::Table)
        .columns(KEY.into_iter().chain(AGGREGATE))
        .on_conflict(
            OnConflict::columns(KEY)
                .update_columns(AGGREGATE)
                .value(S::UpdatedAt, Expr::cust(SQLITE_NOW))
                .to_owned(),
        );
    for ((agent, metric, day), new) in batch {
        let merged = match stored.remove(&(agent.to_owned(), metric.to_owned(), day)) {
            Some(mut merged) => {
                merged.merge(new);
                merged
            }
            None => new,
        };
        let (sum, min, max, last) = merged.texts();
        upsert
            .values([
                agent.into(),
                metric.into(),
                day.into(),
                merged.count.into(),
                sum.into(),
                min.into(),
                max.into(),
                last.into(),
                merged.last_at.into(),
            ])
            .map_err(statement_error)?;
    }
    execute(conn, &upsert).await
}

/// Runs a sea-query write on SQLite.
pub(super) async fn execute(
    conn: &mut SqliteConnection,
    statement: &impl SqlxBinder,
) -> Result<(), StoreError> {
    let (sql, values) = statement.build_sqlx(SqliteQueryBuilder);
    sqlx::query_with(AssertSqlSafe(sql), values)
        .execute(conn)
        .await?;
    Ok(())
}

/// Counts the stored runs `ids` into the daily summaries (`days`) and the agents' rows
/// (`latest`), by the rules the write applies.
pub(in crate::store) async fn count_runs(
    conn: &mut SqliteConnection,
    ids: &[i64],
    days: bool,
    latest: bool,
) -> Result<(), StoreError> {
    let ids = serde_json::to_string(ids).map_err(json_error)?;
    count_runs_json(conn, &ids, days, latest).await
}

async fn count_runs_json(
    conn: &mut SqliteConnection,
    ids: &str,
    days: bool,
    latest: bool,
) -> Result<(), StoreError> {
    for (wanted, statement) in [(days, DAILY_SUMMARIES), (latest, AGENTS)] {
        if wanted {
            sqlx::query(statement).bind(ids).execute(&mut *conn).await?;
        }
    }
    Ok(())
}
