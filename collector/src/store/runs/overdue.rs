//! Runs that outlive their deadline, and the late results that correct them.
//!
//! A `running` row past its `deadline` is closed as failed ("no result from HOST by DEADLINE"),
//! `overdue_at` set, `finished_at` left empty (no report finished it), and counted in the
//! summaries as a failed run (running, it was in none). On PostgreSQL one collector replica does it at a time (a
//! transaction-scoped advisory lock; the others skip their turn); SQLite is one process.
//!
//! The truth wins: a report that arrives later for that run completes it after all. In one
//! transaction the row is made `running` again, its old day counted again without it
//! (`summaries/recount.rs`), and the report written as any completion is (counted then, once).

use agent_sdk::wire::{IncidentKind, RunStatus};
use chrono::{DateTime, SecondsFormat, Utc};
use sea_query::{Expr, ExprTrait, LockBehavior, LockType, Query, UpdateStatement};
use sqlx::FromRow;

use crate::domain::NewRun;
use crate::store::tables::AgentRuns;
use crate::store::{Store, StoreError, Tx};

/// Most rows one pass closes; the next pass takes the rest.
const CLOSE_AT_MOST: u64 = 500;

/// The advisory lock the replicas take in turn to close overdue runs ("overdue" in ASCII).
pub const OVERDUE_LOCK: i64 = 0x006f_7665_7264_7565;

#[derive(FromRow)]
struct OverdueRun {
    id: i64,
    agent_name: String,
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
        // Background work: paced (store/pace.rs). Its rests come before the summaries' rows are
        // locked (their recomputation, last, runs on the connection: no rest in it).
        let mut tx = Tx::begin_paced(self).await?;
        if !tx.try_lock(OVERDUE_LOCK).await? {
            return Ok(0);
        }
        let rows: Vec<OverdueRun> = tx.fetch(&select).await?;
        for row in &rows {
            tx.execute(&close(row, now)).await?;
            // Resolved by the agent's next successful run (the watcher).
            tx.open_incident(
                &row.agent_name,
                IncidentKind::Overdue,
                now,
                &row.error_message(),
            )
            .await?;
        }
        // Running, they were in no summary: counted now, as failed runs.
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        tx.add_to_summaries(&ids).await?;
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
        let mut tx = Tx::begin(self).await?;
        let Some((id, started_at)) = tx.fetch::<(i64, DateTime<Utc>), _>(&select).await?.pop()
        else {
            return Ok(None);
        };
        tx.execute(&reopen(id)).await?;
        tx.recount(run.agent_name.as_str(), started_at.date_naive())
            .await?;
        let written = tx.write_runs(&[run]).await?;
        tx.commit().await?;
        Ok(written.first().map(|(_, _, id)| *id))
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
