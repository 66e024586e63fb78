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
    /// Stores `runs` in one transaction (one statement, [`STORE_BATCH`]) and returns one outcome
    /// per run, in order.
    ///
    /// A run whose `run_key` is already stored — by an earlier request, a concurrent one, or an
    /// earlier element of `runs` — is not written again. Daily summaries count only new runs.
    pub async fn store_runs(&self, runs: &[NewRun]) -> Result<Vec<Stored>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        store_runs_in(&mut conn, runs).await
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

    let created: HashMap<Uuid, i64> = store_new(conn, &unique).await?.into_iter().collect();

    // Keys that were not inserted belong to runs stored before; ON CONFLICT waited for any
    // concurrent writer of the same key to commit, so this read (after the write committed)
    // sees them.
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

async fn store_new(
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
