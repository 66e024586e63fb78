//! The write path: runs, their metrics and both daily aggregates in one transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Store, is_unavailable};
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

    let created: HashMap<Uuid, i64> = insert_runs(conn, &unique).await?.into_iter().collect();

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
    if !new_runs.is_empty() {
        let metrics = MetricRows::of(&new_runs);
        if !metrics.run_ids.is_empty() {
            insert_metrics(conn, &metrics).await?;
        }
        upsert_daily_summaries(conn, &new_runs).await?;
        if metrics.numbers.iter().any(Option::is_some) {
            upsert_metric_daily_summaries(conn, &metrics).await?;
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

/// One statement for any number of runs: the columns go as arrays, so the statement is prepared
/// once per connection and PostgreSQL parses no value lists.
const INSERT_RUNS: &str = r#"
insert into agent_runs
    (run_key, agent_name, started_at, finished_at, status, error_message, duration_ms,
     trigger, scheduled_for, host, metric_count)
select * from unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[],
                     $6::text[], $7::int8[], $8::text[], $9::timestamptz[], $10::text[], $11::int4[])
on conflict (run_key) do nothing
returning run_key, id
"#;

async fn insert_runs(
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
    sqlx::query_as(INSERT_RUNS)
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
        .fetch_all(conn)
        .await
}

/// The metrics of a batch's new runs, column by column, as the statements below bind them.
struct MetricRows<'a> {
    run_ids: Vec<i64>,
    agents: Vec<&'a str>,
    names: Vec<&'a str>,
    /// The decimal literal as sent, for numeric values.
    numbers: Vec<Option<&'a str>>,
    texts: Vec<Option<&'a str>>,
    recorded_at: Vec<DateTime<Utc>>,
}

impl<'a> MetricRows<'a> {
    fn of(runs: &[(i64, &'a NewRun)]) -> Self {
        let rows = runs.iter().map(|(_, run)| run.metrics.len()).sum();
        let mut columns = Self {
            run_ids: Vec::with_capacity(rows),
            agents: Vec::with_capacity(rows),
            names: Vec::with_capacity(rows),
            numbers: Vec::with_capacity(rows),
            texts: Vec::with_capacity(rows),
            recorded_at: Vec::with_capacity(rows),
        };
        for (run_id, run) in runs {
            for metric in &run.metrics {
                let (number, text) = match &metric.value {
                    StoredValue::Numeric(literal) => (Some(literal.as_str()), None),
                    StoredValue::Text(text) => (None, Some(text.as_str())),
                };
                columns.run_ids.push(*run_id);
                columns.agents.push(run.agent_name.as_str());
                columns.names.push(metric.name.as_str());
                columns.numbers.push(number);
                columns.texts.push(text);
                columns.recorded_at.push(run.finished_at);
            }
        }
        columns
    }
}

/// Numbers travel as text and are cast by PostgreSQL, so each decimal is stored exactly as sent.
const INSERT_METRICS: &str = r#"
insert into agent_metrics (run_id, agent_name, metric_name, metric_value, metric_text, recorded_at)
select * from unnest($1::int8[], $2::text[], $3::text[], $4::text[]::numeric[], $5::text[],
                     $6::timestamptz[])
"#;

async fn insert_metrics(conn: &mut PgConnection, rows: &MetricRows<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_METRICS)
        .bind(&rows.run_ids)
        .bind(&rows.agents)
        .bind(&rows.names)
        .bind(&rows.numbers)
        .bind(&rows.texts)
        .bind(&rows.recorded_at)
        .execute(conn)
        .await?;
    Ok(())
}

// The summaries are computed from the batch itself, never by reading back the rows just
// written: a read-back's prepared plan is chosen before the tables have statistics, and a
// sequential scan there grows with the table.

/// Adds new runs to their agent's summary for the UTC day they started. Rows are upserted in
/// key order, so concurrent batches cannot deadlock on them.
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
from unnest($1::int8[], $2::text[], $3::timestamptz[], $4::text[], $5::int8[])
     as r (id, agent_name, started_at, status, duration_ms)
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

async fn upsert_daily_summaries(
    conn: &mut PgConnection,
    runs: &[(i64, &NewRun)],
) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = runs.iter().map(|(id, _)| *id).collect();
    let agents: Vec<&str> = runs.iter().map(|(_, r)| r.agent_name.as_str()).collect();
    let started: Vec<DateTime<Utc>> = runs.iter().map(|(_, r)| r.started_at).collect();
    let statuses: Vec<&str> = runs.iter().map(|(_, r)| r.status.as_str()).collect();
    let durations: Vec<i64> = runs.iter().map(|(_, r)| r.duration_ms()).collect();
    sqlx::query(UPSERT_DAILY_SUMMARIES)
        .bind(ids)
        .bind(agents)
        .bind(started)
        .bind(statuses)
        .bind(durations)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds the numeric metrics of new runs to the per-metric daily aggregates. The last value is
/// the one recorded last, and among equals the one stored last (run id, then position).
const UPSERT_METRIC_DAILY_SUMMARIES: &str = r#"
insert into agent_metric_daily_summaries as s
    (agent_name, metric_name, day, value_count, value_sum, value_min, value_max,
     last_value, last_recorded_at)
select agent_name,
       metric_name,
       (recorded_at at time zone 'UTC')::date,
       count(*),
       sum(value),
       min(value),
       max(value),
       (array_agg(value order by recorded_at desc, run_id desc, position desc))[1],
       max(recorded_at)
from (select run_id, agent_name, metric_name, literal::numeric as value, recorded_at, position
      from unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
           with ordinality as m (run_id, agent_name, metric_name, literal, recorded_at, position)
      where literal is not null) as numeric_metrics
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

async fn upsert_metric_daily_summaries(
    conn: &mut PgConnection,
    rows: &MetricRows<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(UPSERT_METRIC_DAILY_SUMMARIES)
        .bind(&rows.run_ids)
        .bind(&rows.agents)
        .bind(&rows.names)
        .bind(&rows.numbers)
        .bind(&rows.recorded_at)
        .execute(conn)
        .await?;
    Ok(())
}
