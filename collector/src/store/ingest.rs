//! The write path: runs, their metrics and both daily aggregates in one transaction.
//!
//! What is shared by both backends: which reports of a batch are written (the first with each
//! `run_key`), the lookup of keys stored before, one outcome per report, and the isolation of a
//! refused run. What is not: the write itself. PostgreSQL does it in one statement
//! ([`STORE_BATCH`]: columns as arrays, data-modifying CTEs), the ingest rate measured in
//! docs/performance.md; SQLite has neither, nor a decimal type, and does it in several
//! statements in one `BEGIN IMMEDIATE` transaction ([`sqlite_store_new`]), the per-metric sums
//! in exact decimals computed here. The summaries follow the same rules in both, and the
//! collector's test suite runs against both.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sea_query::{Expr, ExprTrait, InsertStatement, OnConflict, Query, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use sqlx::{AssertSqlSafe, PgConnection, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::metric_day::MetricDay;
use super::schema::{AgentMetricDailySummaries, AgentMetrics, AgentRuns};
use super::{Pool, Store, StoredRun, is_unavailable};
use crate::domain::{NewRun, StoredValue};

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
    /// Stores `runs` in one transaction (one statement, [`STORE_BATCH`]) and returns one outcome
    /// per run, in order.
    ///
    /// A run whose `run_key` is already stored — by an earlier request, a concurrent one, or an
    /// earlier element of `runs` — is not written again. Daily summaries count only new runs.
    pub async fn store_runs(&self, runs: &[NewRun]) -> Result<Vec<Stored>, sqlx::Error> {
        // The first report with a given key is the one written; later ones in the batch repeat it.
        let mut first_with_key: HashMap<Uuid, usize> = HashMap::with_capacity(runs.len());
        let unique: Vec<&NewRun> = runs
            .iter()
            .enumerate()
            .filter(|(i, run)| *first_with_key.entry(run.run_key).or_insert(*i) == *i)
            .map(|(_, run)| run)
            .collect();

        let created: HashMap<Uuid, i64> = match &self.pool {
            Pool::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                postgres_store_new(&mut conn, &unique).await?
            }
            Pool::Sqlite(pool) => sqlite_store_new(pool, &unique).await?,
        }
        .into_iter()
        .collect();

        // Keys that were not inserted belong to runs stored before; the write waited for any
        // concurrent writer of the same key to commit (PostgreSQL: ON CONFLICT; SQLite: the
        // database lock), so this read, after the write committed, sees them.
        let existing_keys: Vec<Uuid> = unique
            .iter()
            .map(|run| run.run_key)
            .filter(|key| !created.contains_key(key))
            .collect();
        let existing: HashMap<Uuid, i64> = if existing_keys.is_empty() {
            HashMap::new()
        } else {
            let select = Query::select()
                .columns([AgentRuns::RunKey, AgentRuns::Id])
                .from(AgentRuns::Table)
                .and_where(Expr::col(AgentRuns::RunKey).is_in(existing_keys))
                .take();
            self.fetch::<(Uuid, i64)>(&select)
                .await?
                .into_iter()
                .collect()
        };

        let outcomes = runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                let is_first = first_with_key.get(&run.run_key) == Some(&i);
                match (created.get(&run.run_key), existing.get(&run.run_key)) {
                    (Some(id), _) if is_first => Ok(Stored::Created(*id)),
                    (Some(id), _) | (None, Some(id)) => Ok(Stored::Existing(*id)),
                    // Cannot happen (the write waits for the other writer); an internal error if so.
                    (None, None) => Err(sqlx::Error::RowNotFound),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.announce(runs, &outcomes);
        Ok(outcomes)
    }

    /// Tells the subscribers, if any, of each run just created.
    fn announce(&self, runs: &[NewRun], outcomes: &[Stored]) {
        if self.stored_runs.receiver_count() == 0 {
            return;
        }
        for (run, outcome) in runs.iter().zip(outcomes) {
            if let Stored::Created(run_id) = *outcome {
                // No subscriber left is not an error.
                let _ = self.stored_runs.send(StoredRun {
                    run_id,
                    agent_name: run.agent_name.as_str().to_owned(),
                    status: run.status,
                    duration_ms: run.duration_ms(),
                    metric_count: run.metrics.len(),
                });
            }
        }
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

/// The whole write of a batch in one statement (one round trip, atomic on its own): the runs
/// whose `run_key` is new, their metrics, and both daily summaries computed from those rows,
/// never read back from the tables. The columns travel as arrays, so the statement is prepared
/// once per connection whatever the batch size. Summary rows are upserted in key order, so
/// concurrent batches cannot deadlock on them. Numbers travel as text and are cast by
/// PostgreSQL, so each decimal is stored exactly as sent. Returns (run_key, id) of each new run.
const STORE_BATCH: &str = r#"
with new_runs as (
    insert into agent_runs
        (run_key, agent_name, started_at, finished_at, status, error_message, duration_ms,
         trigger, scheduled_for, host, metric_count)
    select * from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                         $5::text[], $6::text[], $7::int8[], $8::text[], $9::timestamptz[],
                         $10::text[], $11::int4[])
    on conflict (run_key) do nothing
    returning id, run_key, agent_name, started_at, finished_at, status, duration_ms
),
new_metrics as (
    insert into agent_metrics
        (run_id, agent_name, metric_name, metric_value, metric_text, recorded_at)
    select r.id, r.agent_name, m.metric_name, m.literal::numeric, m.text_value, r.finished_at
    from unnest($12::uuid[], $13::text[], $14::text[], $15::text[]) with ordinality
             as m (run_key, metric_name, literal, text_value, position)
    join new_runs r using (run_key)
    order by r.id, m.position
    returning id, run_id, agent_name, metric_name, metric_value, recorded_at
),
daily as (
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
    from new_runs
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
),
metric_daily as (
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
    from new_metrics
    where metric_value is not null
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
)
select run_key, id from new_runs
"#;

async fn postgres_store_new(
    conn: &mut PgConnection,
    runs: &[&NewRun],
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let keys: Vec<Uuid> = runs.iter().map(|r| r.run_key).collect();
    let agents: Vec<&str> = runs.iter().map(|r| r.agent_name.as_str()).collect();
    let started: Vec<DateTime<Utc>> = runs.iter().map(|r| r.started_at).collect();
    let finished: Vec<DateTime<Utc>> = runs.iter().map(|r| r.finished_at).collect();
    let statuses: Vec<&str> = runs.iter().map(|r| r.status.as_str()).collect();
    let errors: Vec<Option<&str>> = runs.iter().map(|r| r.error_message.as_deref()).collect();
    let durations: Vec<i64> = runs.iter().map(|r| r.duration_ms()).collect();
    let triggers: Vec<&str> = runs.iter().map(|r| r.trigger.as_str()).collect();
    let scheduled: Vec<Option<DateTime<Utc>>> = runs.iter().map(|r| r.scheduled_for).collect();
    let hosts: Vec<Option<&str>> = runs.iter().map(|r| r.host.as_deref()).collect();
    let counts: Vec<i32> = runs
        .iter()
        .map(|r| i32::try_from(r.metrics.len()).unwrap_or(i32::MAX))
        .collect();

    let rows = runs.iter().map(|run| run.metrics.len()).sum();
    let mut metric_keys = Vec::with_capacity(rows);
    let mut names = Vec::with_capacity(rows);
    let mut numbers = Vec::with_capacity(rows);
    let mut texts = Vec::with_capacity(rows);
    for run in runs {
        for metric in &run.metrics {
            let (number, text) = match &metric.value {
                StoredValue::Numeric(literal) => (Some(literal.as_str()), None),
                StoredValue::Text(text) => (None, Some(text.as_str())),
            };
            metric_keys.push(run.run_key);
            names.push(metric.name.as_str());
            numbers.push(number);
            texts.push(text);
        }
    }

    sqlx::query_as(STORE_BATCH)
        .bind(keys)
        .bind(agents)
        .bind(started)
        .bind(finished)
        .bind(statuses)
        .bind(errors)
        .bind(durations)
        .bind(triggers)
        .bind(scheduled)
        .bind(hosts)
        .bind(counts)
        .bind(metric_keys)
        .bind(names)
        .bind(numbers)
        .bind(texts)
        .fetch_all(conn)
        .await
}

/// Rows per multi-row INSERT on SQLite, well under its 32 766 bound parameters per statement.
const SQLITE_RUNS_PER_INSERT: usize = 500;
const SQLITE_METRICS_PER_INSERT: usize = 1000;

/// The SQLite form of [`STORE_BATCH`], in one `BEGIN IMMEDIATE` transaction (the write lock
/// taken up front, so that the busy timeout applies): the new runs (multi-row INSERT … ON
/// CONFLICT DO NOTHING RETURNING), their metrics, the daily summaries aggregated by SQLite from
/// the runs just inserted ([`SQLITE_DAILY`]), and the per-metric aggregates in exact decimals
/// ([`sqlite_merge_metric_days`]). Returns (run_key, id) of each new run.
async fn sqlite_store_new(
    pool: &SqlitePool,
    runs: &[&NewRun],
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut created: Vec<(Uuid, i64)> = Vec::with_capacity(runs.len());
    for chunk in runs.chunks(SQLITE_RUNS_PER_INSERT) {
        let (sql, values) = insert_runs(chunk)?.build_sqlx(SqliteQueryBuilder);
        created.extend(
            sqlx::query_as_with::<_, (Uuid, i64), _>(AssertSqlSafe(sql), values)
                .fetch_all(&mut *tx)
                .await?,
        );
    }
    if created.is_empty() {
        tx.commit().await?;
        return Ok(created);
    }

    let ids: HashMap<Uuid, i64> = created.iter().copied().collect();
    // In report order, each run's metrics in the order sent: ids grow as they were reported.
    let metrics: Vec<_> = runs
        .iter()
        .filter_map(|run| ids.get(&run.run_key).map(|id| (*id, *run)))
        .flat_map(|(id, run)| run.metrics.iter().map(move |metric| (id, run, metric)))
        .collect();
    for chunk in metrics.chunks(SQLITE_METRICS_PER_INSERT) {
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
            let (number, text) = match &metric.value {
                StoredValue::Numeric(literal) => (Some(literal.as_str()), None),
                StoredValue::Text(text) => (None, Some(text.as_str())),
            };
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
        sqlite_execute(&mut tx, &insert).await?;
    }

    // The new runs' ids as one JSON array: the statements stay the same whatever the batch.
    let new_ids = serde_json::to_string(&created.iter().map(|(_, id)| *id).collect::<Vec<_>>())
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(SQLITE_DAILY)
        .bind(&new_ids)
        .execute(&mut *tx)
        .await?;
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
        let chunk = days
            .by_ref()
            .take(SQLITE_METRIC_DAYS_PER_STATEMENT)
            .collect();
        sqlite_merge_metric_days(&mut tx, chunk).await?;
    }
    tx.commit().await?;
    Ok(created)
}

fn insert_runs(runs: &[&NewRun]) -> Result<InsertStatement, sqlx::Error> {
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
        .on_conflict(
            OnConflict::column(AgentRuns::RunKey)
                .do_nothing()
                .to_owned(),
        )
        .returning(Query::returning().columns([AgentRuns::RunKey, AgentRuns::Id]));
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
                i32::try_from(run.metrics.len()).unwrap_or(i32::MAX).into(),
            ])
            .map_err(statement_error)?;
    }
    Ok(insert)
}

fn statement_error(err: sea_query::error::Error) -> sqlx::Error {
    sqlx::Error::Encode(Box::new(err))
}

/// The daily summaries of the runs whose ids `?1` (a JSON array) lists, merged into the stored
/// ones: [`STORE_BATCH`]'s `daily` step in SQLite. `first_value` picks the status of each
/// day's latest run; the `where true` lets SQLite parse an upsert fed by a SELECT.
const SQLITE_DAILY: &str = r#"
insert into agent_daily_summaries as s
    (agent_name, day, run_count, success_count, failure_count, total_duration_ms,
     min_duration_ms, max_duration_ms, last_run_at, last_status, last_success_at)
select agent_name, day, count(*), sum(status = 'success'), sum(status = 'failed'),
       coalesce(sum(duration_ms), 0), min(duration_ms), max(duration_ms), max(started_at),
       max(latest_status), max(case when status = 'success' then started_at end)
from (select agent_name, date(started_at) as day, status, duration_ms, started_at,
             first_value(status) over (partition by agent_name, date(started_at)
                                       order by started_at desc, id desc) as latest_status
      from agent_runs
      where id in (select value from json_each(?1)))
where true
group by agent_name, day
order by agent_name, day
on conflict (agent_name, day) do update set
    run_count         = s.run_count + excluded.run_count,
    success_count     = s.success_count + excluded.success_count,
    failure_count     = s.failure_count + excluded.failure_count,
    total_duration_ms = s.total_duration_ms + excluded.total_duration_ms,
    min_duration_ms   = min(coalesce(s.min_duration_ms, excluded.min_duration_ms),
                            coalesce(excluded.min_duration_ms, s.min_duration_ms)),
    max_duration_ms   = max(coalesce(s.max_duration_ms, excluded.max_duration_ms),
                            coalesce(excluded.max_duration_ms, s.max_duration_ms)),
    last_status       = case when excluded.last_run_at >= s.last_run_at
                             then excluded.last_status else s.last_status end,
    last_run_at       = max(s.last_run_at, excluded.last_run_at),
    last_success_at   = max(coalesce(s.last_success_at, excluded.last_success_at),
                            coalesce(excluded.last_success_at, s.last_success_at)),
    updated_at        = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
"#;

/// Now, as SQLite writes `updated_at` (the schema's default).
const SQLITE_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// The stored aggregates of the (agent, metric, day) keys `?1` lists (a JSON array of triples):
/// one primary-key lookup each.
const SQLITE_STORED_METRIC_DAYS: &str = r#"
select s.agent_name, s.metric_name, s.day, s.value_count, s.value_sum, s.value_min,
       s.value_max, s.last_value, s.last_recorded_at
from json_each(?1) as k
join agent_metric_daily_summaries as s
  on s.agent_name = k.value ->> 0 and s.metric_name = k.value ->> 1 and s.day = k.value ->> 2
"#;

/// Metric days written per upsert: nine parameters each.
const SQLITE_METRIC_DAYS_PER_STATEMENT: usize = 1000;

type MetricDayKey<'a> = (&'a str, &'a str, NaiveDate);

/// Merges each (agent, metric, day) aggregate of a batch into its stored row:
/// [`STORE_BATCH`]'s `metric_daily` step for SQLite. The stored rows are read in one statement
/// ([`SQLITE_STORED_METRIC_DAYS`]), merged in exact decimals ([`MetricDay`]) and written back in
/// one upsert, under the transaction's write lock.
async fn sqlite_merge_metric_days(
    conn: &mut SqliteConnection,
    batch: Vec<(MetricDayKey<'_>, MetricDay)>,
) -> Result<(), sqlx::Error> {
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
    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
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
        sqlx::query_as::<_, Row>(SQLITE_STORED_METRIC_DAYS)
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
    sqlite_execute(conn, &upsert).await
}

async fn sqlite_execute(
    conn: &mut SqliteConnection,
    insert: &InsertStatement,
) -> Result<(), sqlx::Error> {
    let (sql, values) = insert.build_sqlx(SqliteQueryBuilder);
    sqlx::query_with(AssertSqlSafe(sql), values)
        .execute(conn)
        .await
        .map(drop)
}
