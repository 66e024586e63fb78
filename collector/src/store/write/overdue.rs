//! Runs that outlive their deadline, and the late results that correct them.
//!
//! A `running` row past its `deadline` is closed as failed ("no result from HOST by DEADLINE"),
//! `overdue_at` set, `finished_at` left empty (no report finished it), and its day's summary
//! computed again from the rows. On PostgreSQL one collector replica does it at a time (a
//! transaction-scoped advisory lock; the others skip their turn); SQLite is one process.
//!
//! The truth wins: a report that arrives later for that run completes it after all. In one
//! transaction the row is made `running` again, its old day's summary computed again without
//! it, and the report written as any completion is (counted then, once).

use agent_sdk::wire::{IncidentKind, RunStatus};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sea_query::{
    Expr, ExprTrait, LockBehavior, LockType, PostgresQueryBuilder, Query, SelectStatement,
    SqliteQueryBuilder, UpdateStatement,
};
use sea_query_sqlx::SqlxBinder;
use sqlx::{AssertSqlSafe, FromRow, PgConnection, SqliteConnection};

use super::{Pool, Store, StoreError, postgres, sqlite};
use crate::domain::NewRun;
use crate::store::expect::open_incident;
use crate::store::schema::AgentRuns;
use crate::store::tx::{Conn, Tx};

/// Most rows one pass closes; the next pass takes the rest.
const CLOSE_AT_MOST: u64 = 500;

/// The advisory lock the replicas take in turn to close overdue runs ("overdue" in ASCII).
pub const OVERDUE_LOCK: i64 = 0x006f_7665_7264_7565;

const RECOMPUTE_POSTGRES: &str = include_str!("../sql/postgres/recompute_daily.sql");
const RECOMPUTE_SQLITE: &str = include_str!("../sql/sqlite/recompute_daily.sql");
const RECOMPUTE_AGENT_POSTGRES: &str = include_str!("../sql/postgres/recompute_agent.sql");
const RECOMPUTE_AGENT_SQLITE: &str = include_str!("../sql/sqlite/recompute_agent.sql");
const RECOMPUTE_AGENT_GONE_SQLITE: &str = "delete from agents where agent_name = ?1 \
     and not exists (select 1 from agent_daily_summaries where agent_name = ?1)";
const DELETE_EMPTY_DAY_SQLITE: &str = "delete from agent_daily_summaries \
     where agent_name = ?1 and day = ?2 and not exists (select 1 from agent_runs \
     where agent_name = ?1 and date(started_at) = ?2 and status <> 'running')";

#[derive(FromRow)]
struct OverdueRun {
    id: i64,
    agent_name: String,
    started_at: DateTime<Utc>,
    host: Option<String>,
    claimant: Option<String>,
    deadline: DateTime<Utc>,
}

impl OverdueRun {
    fn error_message(&self) -> String {
        let runner = self
            .host
            .as_deref()
            .or(self.claimant.as_deref())
            .unwrap_or("its runner");
        format!(
            "no result from {runner} by {} (its deadline): closed as overdue",
            self.deadline.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }
}

impl Store {
    /// Closes the runs `running` past their deadline at `now` (at most 500 a call) as failed,
    /// and returns how many. On PostgreSQL, 0 while another replica is doing it.
    pub async fn close_overdue(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut select = Query::select();
        select
            .columns([
                AgentRuns::Id,
                AgentRuns::AgentName,
                AgentRuns::StartedAt,
                AgentRuns::Host,
                AgentRuns::Claimant,
                AgentRuns::Deadline,
            ])
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::Status).eq(RunStatus::Running.as_str()))
            .and_where(Expr::col(AgentRuns::Deadline).lt(now))
            .order_by(AgentRuns::Deadline, sea_query::Order::Asc)
            .limit(CLOSE_AT_MOST)
            // PostgreSQL: rows a report is completing right now are left for the next pass.
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        // Background work: paced (store/tx.rs). Its rests come before the summaries' rows are
        // locked (their recomputation, last, runs on the connection: no rest in it).
        let mut tx = Tx::begin_paced(self).await?;
        if !tx.try_lock(OVERDUE_LOCK).await? {
            return Ok(0);
        }
        let rows: Vec<OverdueRun> = tx.fetch(&select).await?;
        for row in &rows {
            tx.execute(&close(row, now)).await?;
            // Resolved by the agent's next successful run (the watcher).
            open_incident(
                &mut tx,
                &row.agent_name,
                IncidentKind::Overdue,
                now,
                &row.error_message(),
            )
            .await?;
        }
        for (agent, day) in days(rows.iter().map(|r| (&r.agent_name, r.started_at))) {
            match &mut tx.conn {
                Conn::Postgres(tx) => recompute_postgres(tx, agent, day).await?,
                Conn::Sqlite(tx) => recompute_sqlite(tx, agent, day).await?,
            }
        }
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Completes the run `run_key` names with `run`, its late result, if the collector closed
    /// it as overdue (and it is the same agent's): `Some(id)`. `None` when it is not such a run
    /// (any more): the caller answers as for any stored run.
    pub(super) async fn complete_overdue(&self, run: &NewRun) -> Result<Option<i64>, StoreError> {
        let mut select = Query::select();
        select
            .columns([AgentRuns::Id, AgentRuns::StartedAt])
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::RunKey).eq(run.run_key))
            .and_where(Expr::col(AgentRuns::AgentName).eq(run.agent_name.as_str()))
            .and_where(Expr::col(AgentRuns::OverdueAt).is_not_null())
            .and_where(Expr::col(AgentRuns::FinishedAt).is_null())
            .lock(LockType::Update);
        match &self.pool {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let Some((id, started_at)) = pg_fetch::<(i64, DateTime<Utc>)>(&mut tx, &select)
                    .await?
                    .pop()
                else {
                    return Ok(None);
                };
                pg_execute(&mut tx, &reopen(id)).await?;
                recompute_postgres(&mut tx, run.agent_name.as_str(), started_at.date_naive())
                    .await?;
                let written = postgres::insert_new(&mut tx, &[run]).await?;
                tx.commit().await?;
                Ok(written.first().map(|(_, id)| *id))
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let Some((id, started_at)) = sqlite_fetch::<(i64, DateTime<Utc>)>(&mut tx, &select)
                    .await?
                    .pop()
                else {
                    return Ok(None);
                };
                sqlite::execute(&mut tx, &reopen(id)).await?;
                recompute_sqlite(&mut tx, run.agent_name.as_str(), started_at.date_naive()).await?;
                let written = sqlite::write(&mut tx, &[run]).await?;
                tx.commit().await?;
                Ok(written.first().map(|(_, id)| *id))
            }
        }
    }
}

/// The update that closes `row` as overdue.
fn close(row: &OverdueRun, now: DateTime<Utc>) -> UpdateStatement {
    Query::update()
        .table(AgentRuns::Table)
        .values([
            (AgentRuns::Status, RunStatus::Failed.as_str().into()),
            (AgentRuns::ErrorMessage, row.error_message().into()),
            (AgentRuns::OverdueAt, now.into()),
        ])
        .and_where(Expr::col(AgentRuns::Id).eq(row.id))
        .to_owned()
}

/// The update that makes a closed run `running` again, for its result to complete it
/// (`overdue_at` stays: it was overdue once).
fn reopen(id: i64) -> UpdateStatement {
    Query::update()
        .table(AgentRuns::Table)
        .values([
            (AgentRuns::Status, RunStatus::Running.as_str().into()),
            (AgentRuns::ErrorMessage, Option::<String>::None.into()),
        ])
        .and_where(Expr::col(AgentRuns::Id).eq(id))
        .to_owned()
}

/// Each (agent, UTC day of `started_at`) once.
fn days<'a>(
    runs: impl Iterator<Item = (&'a String, DateTime<Utc>)>,
) -> std::collections::BTreeSet<(&'a str, NaiveDate)> {
    runs.map(|(agent, at)| (agent.as_str(), at.date_naive()))
        .collect()
}

/// The agent's summary of `day` computed again from its runs, then its row of `agents` from
/// its summaries.
async fn recompute_postgres(
    tx: &mut PgConnection,
    agent: &str,
    day: NaiveDate,
) -> Result<(), StoreError> {
    sqlx::query(RECOMPUTE_POSTGRES)
        .bind(agent)
        .bind(day)
        .execute(&mut *tx)
        .await?;
    sqlx::query(RECOMPUTE_AGENT_POSTGRES)
        .bind(agent)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// [`recompute_postgres`] on SQLite.
async fn recompute_sqlite(
    tx: &mut SqliteConnection,
    agent: &str,
    day: NaiveDate,
) -> Result<(), StoreError> {
    let day = day.to_string();
    sqlx::query(DELETE_EMPTY_DAY_SQLITE)
        .bind(agent)
        .bind(&day)
        .execute(&mut *tx)
        .await?;
    sqlx::query(RECOMPUTE_SQLITE)
        .bind(agent)
        .bind(&day)
        .execute(&mut *tx)
        .await?;
    sqlx::query(RECOMPUTE_AGENT_GONE_SQLITE)
        .bind(agent)
        .execute(&mut *tx)
        .await?;
    sqlx::query(RECOMPUTE_AGENT_SQLITE)
        .bind(agent)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn pg_fetch<T>(tx: &mut PgConnection, select: &SelectStatement) -> Result<Vec<T>, StoreError>
where
    T: for<'r> FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let (sql, values) = select.build_sqlx(PostgresQueryBuilder);
    Ok(sqlx::query_as_with(AssertSqlSafe(sql), values)
        .fetch_all(tx)
        .await?)
}

async fn pg_execute(tx: &mut PgConnection, update: &UpdateStatement) -> Result<(), StoreError> {
    let (sql, values) = update.build_sqlx(PostgresQueryBuilder);
    sqlx::query_with(AssertSqlSafe(sql), values)
        .execute(tx)
        .await?;
    Ok(())
}

async fn sqlite_fetch<T>(
    tx: &mut SqliteConnection,
    select: &SelectStatement,
) -> Result<Vec<T>, StoreError>
where
    T: for<'r> FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    let (sql, values) = select.build_sqlx(SqliteQueryBuilder);
    Ok(sqlx::query_as_with(AssertSqlSafe(sql), values)
        .fetch_all(tx)
        .await?)
}
