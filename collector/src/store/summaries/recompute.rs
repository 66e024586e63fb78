//! A day's summary computed again from its runs, and the agent's row from its days: for the
//! paths that change a run already counted (a run closed as overdue, its late result). The
//! rules are those of the write (docs/architecture.md), over the stored rows.

use chrono::NaiveDate;
use sqlx::{PgConnection, SqliteConnection};

use crate::store::StoreError;

const RECOMPUTE_POSTGRES: &str = include_str!("../sql/postgres/recompute_daily.sql");
const RECOMPUTE_SQLITE: &str = include_str!("../sql/sqlite/recompute_daily.sql");
const RECOMPUTE_AGENT_POSTGRES: &str = include_str!("../sql/postgres/recompute_agent.sql");
const RECOMPUTE_AGENT_SQLITE: &str = include_str!("../sql/sqlite/recompute_agent.sql");
const RECOMPUTE_AGENT_GONE_SQLITE: &str = "delete from agents where agent_name = ?1 \
     and not exists (select 1 from agent_daily_summaries where agent_name = ?1)";
const DELETE_EMPTY_DAY_SQLITE: &str = "delete from agent_daily_summaries \
     where agent_name = ?1 and day = ?2 and not exists (select 1 from agent_runs \
     where agent_name = ?1 and date(started_at) = ?2 and status <> 'running')";

/// The agent's summary of `day` computed again from its runs, then its row of `agents` from
/// its summaries.
pub(in crate::store) async fn recompute_postgres(
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
pub(in crate::store) async fn recompute_sqlite(
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
