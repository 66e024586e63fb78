//! The jobs the schedulers published (their rows of `agent_expectations` with the source
//! `scheduler`): their view for `GET /jobs` and the console, the cron of a job an operator acts
//! on, and the settings the watcher reads. Their pauses are `job_pauses.rs`, what is asked of
//! them `job_commands.rs`.

use std::collections::HashMap;

use agent_sdk::wire::{ExpectationSource, JobPause, JobView, RunStatus};
use chrono::{DateTime, Utc};
use sea_query::{Expr, ExprTrait, Func, Order, Query, SelectStatement};
use sqlx::FromRow;

use super::agent_expectations::cron_cadence;
use super::tables::{AgentExpectations, AgentRuns};
use super::{AgentAccess, Store, StoreError, Tx};
use crate::domain::Cadence;

/// A job as the schedulers published it.
#[derive(Debug, FromRow)]
struct PublishedJob {
    name: String,
    cron: String,
    timezone: String,
    catchup_window: Option<String>,
    jitter: Option<String>,
    pause_after_failures: Option<i64>,
}

/// The schedulers' jobs (a cron each).
fn published() -> SelectStatement {
    Query::select()
        .columns([
            AgentExpectations::Name,
            AgentExpectations::Cron,
            AgentExpectations::Timezone,
            AgentExpectations::CatchupWindow,
            AgentExpectations::Jitter,
            AgentExpectations::PauseAfterFailures,
        ])
        .from(AgentExpectations::Table)
        .and_where(Expr::col(AgentExpectations::Source).eq(ExpectationSource::Scheduler.as_str()))
        .and_where(Expr::col(AgentExpectations::Cron).is_not_null())
        .take()
}

impl Store {
    /// The cron of `job`, if a scheduler published it.
    pub async fn published_cron(&self, job: &str) -> Result<Option<Cadence>, StoreError> {
        let row: Option<PublishedJob> = self
            .fetch(published().and_where(Expr::col(AgentExpectations::Name).eq(job)))
            .await?
            .pop();
        row.map(|row| {
            cron_cadence(&self.crons, &row.cron, &row.timezone).map_err(|e| {
                StoreError::internal("reading a published job's cron", format!("{job}: {e}"))
            })
        })
        .transpose()
    }

    /// The jobs the schedulers published that `access` may see, by name: their cron, next slot,
    /// running runs, pause and settings.
    pub async fn list_jobs(
        &self,
        access: &AgentAccess,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobView>, StoreError> {
        let mut jobs = published();
        jobs.order_by(AgentExpectations::Name, Order::Asc);
        if let Some(access) = access.condition(AgentExpectations::AgentName) {
            jobs.cond_where(access);
        }
        let jobs: Vec<PublishedJob> = self.fetch(&jobs).await?;

        let mut running = Query::select();
        running
            .column(AgentRuns::AgentName)
            .expr(Func::count(Expr::col(AgentRuns::Id)))
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::Status).eq(RunStatus::Running.as_str()))
            .group_by_col(AgentRuns::AgentName);
        if let Some(access) = access.condition(AgentRuns::AgentName) {
            running.cond_where(access);
        }
        let running: HashMap<String, i64> = self
            .fetch::<(String, i64), _>(&running)
            .await?
            .into_iter()
            .collect();
        let mut pauses: HashMap<String, JobPause> = self
            .pauses_in_force(access, now)
            .await?
            .into_iter()
            .collect();

        Ok(jobs
            .into_iter()
            .map(|row| {
                let next_slot = cron_cadence(&self.crons, &row.cron, &row.timezone)
                    .ok()
                    .and_then(|cadence| cadence.next_after(now));
                JobView {
                    running: running.get(&row.name).copied().unwrap_or(0),
                    pause: pauses.remove(&row.name),
                    job: row.name,
                    cron: row.cron,
                    timezone: row.timezone,
                    next_slot,
                    catchup_window: row.catchup_window.unwrap_or_else(|| "latest".into()),
                    jitter: row.jitter,
                    pause_after_failures: row
                        .pause_after_failures
                        .and_then(|n| u32::try_from(n).ok()),
                }
            })
            .collect())
    }
}

impl Tx {
    /// Per job a scheduler published with `pause_after_failures`: that number.
    pub(crate) async fn pause_after_failures(
        &mut self,
    ) -> Result<HashMap<String, u32>, StoreError> {
        let jobs: Vec<PublishedJob> = self
            .fetch(
                published()
                    .and_where(Expr::col(AgentExpectations::PauseAfterFailures).is_not_null()),
            )
            .await?;
        Ok(jobs
            .into_iter()
            .filter_map(|job| Some((job.name, u32::try_from(job.pause_after_failures?).ok()?)))
            .collect())
    }
}
