//! The write on PostgreSQL: one statement per batch ([`STORE_BATCH`]), the columns as arrays.

use std::time::Instant;

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use uuid::Uuid;

use super::{Written, metric_columns};
use crate::domain::NewRun;
use crate::store::StoreError;
use crate::store::pools::PING_WHEN_IDLE_FOR;

/// A pooled connection an ingest writer keeps from one batch to the next. sqlx pings every
/// connection it takes back into the pool (a second round trip per batch, and the connection
/// is not free again until it is answered, docs/performance.md); a held connection is neither
/// taken nor given back per batch. Like the pool's, it is pinged when idle for a second, so a
/// PostgreSQL restart costs a new connection, not an error; after any error it is let go, and
/// the next batch takes another.
#[derive(Default)]
pub struct HeldConnection {
    conn: Option<(PoolConnection<Postgres>, Instant)>,
}

impl HeldConnection {
    /// [`insert_new`] on the held connection (taken from `pool` first if there is none, or if
    /// it idled and does not answer a ping).
    pub(in crate::store) async fn insert_new(
        &mut self,
        pool: &PgPool,
        runs: &[&NewRun],
    ) -> Result<Vec<Written>, StoreError> {
        let mut conn = match self.conn.take() {
            Some((conn, used)) if used.elapsed() < PING_WHEN_IDLE_FOR => conn,
            Some((mut conn, _)) => match conn.ping().await {
                Ok(()) => conn,
                // Closed rather than given back: it is broken.
                Err(_) => {
                    conn.close_on_drop();
                    drop(conn);
                    pool.acquire().await?
                }
            },
            None => pool.acquire().await?,
        };
        let written = insert_new(&mut conn, runs).await?;
        self.conn = Some((conn, Instant::now()));
        Ok(written)
    }
}

/// The whole write of a batch in one statement: the runs and their metrics
/// (`sql/postgres/insert_runs.sql`) and the summary rules over them (`daily.sql`, `latest.sql`);
/// ([`Written`]) each run written. Data-modifying CTEs, one round trip: the ingest rate
/// measured in docs/performance.md, where bench/run.sh puts the same files together for pgbench.
const STORE_BATCH: &str = concat!(
    "with ",
    include_str!("../sql/postgres/insert_runs.sql"),
    ",\n",
    include_str!("../sql/postgres/daily.sql"),
    ",\n",
    include_str!("../sql/postgres/latest.sql"),
    "select run_key, agent_name, id from new_runs"
);

/// The summary rules over stored runs (`sql/postgres/runs_by_id.sql`: `$1`, their ids), per day
/// and per agent.
const COUNT_DAYS: &str = concat!(
    "with ",
    include_str!("../sql/postgres/runs_by_id.sql"),
    ",\n",
    include_str!("../sql/postgres/daily.sql"),
    "select count(*) from new_runs"
);
const COUNT_LATEST: &str = concat!(
    "with ",
    include_str!("../sql/postgres/runs_by_id.sql"),
    ",\n",
    include_str!("../sql/postgres/latest.sql"),
    "select count(*) from new_runs"
);

/// Counts the stored runs `ids` into the daily summaries (`days`) and the agents' rows
/// (`latest`), by the rules the write applies.
pub(in crate::store) async fn count_runs(
    conn: &mut PgConnection,
    ids: &[i64],
    days: bool,
    latest: bool,
) -> Result<(), StoreError> {
    for (wanted, statement) in [(days, COUNT_DAYS), (latest, COUNT_LATEST)] {
        if wanted {
            sqlx::query(statement).bind(ids).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// Writes the runs of `runs` whose `run_key` is new for their agent or whose run is `running`
/// (completed now), their metrics and both daily aggregates, in one statement; returns each
/// run written.
pub(in crate::store) async fn insert_new(
    conn: &mut PgConnection,
    runs: &[&NewRun],
) -> Result<Vec<Written>, StoreError> {
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
    let counts: Vec<i32> = runs.iter().map(|r| r.metric_count()).collect();

    let rows = runs.iter().map(|run| run.metrics.len()).sum();
    let mut metric_keys = Vec::with_capacity(rows);
    let mut metric_agents = Vec::with_capacity(rows);
    let mut names = Vec::with_capacity(rows);
    let mut numbers = Vec::with_capacity(rows);
    let mut texts = Vec::with_capacity(rows);
    for run in runs {
        for metric in &run.metrics {
            let (number, text) = metric_columns(metric);
            metric_keys.push(run.run_key);
            metric_agents.push(run.agent_name.as_str());
            names.push(metric.name.as_str());
            numbers.push(number);
            texts.push(text);
        }
    }

    let created = sqlx::query_as(STORE_BATCH)
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
        .bind(metric_agents)
        .fetch_all(conn)
        .await?;
    Ok(created)
}
