//! Operating jobs: the jobs the schedulers published (`GET /jobs`), the commands for the
//! schedulers (`job_commands`: run now, backfill, cancel) with, in the same transaction as
//! each, its row of `audit_log`, and what a replica is told when it polls. Pauses are
//! `job_pauses.rs`.
//!
//! The schedulers poll ([`Store::commands_for`]); nothing here reaches out to them. A run
//! command is pending until a run under its key exists (the replica whose claim the collector
//! grants runs it: exactly once), a cancel until the run it names has ended.

use std::collections::HashMap;

use agent_sdk::wire::{
    CancelCommand, Commands, JobPause, JobView, PausedJob, RunCommand, RunStatus,
};
use chrono::{DateTime, TimeDelta, Utc};
use sea_query::{Alias, Cond, Expr, ExprTrait, Func, Order, Query};
use serde_json::{Map, Value};
use sqlx::FromRow;
use uuid::Uuid;

use super::tables::{AgentExpectations, AgentRuns, JobCommands};
use super::{AgentAccess, Audit, Store, StoreError, Tx};
use crate::domain::Cadence;

/// A run asked for by hand that no scheduler started within this long is no longer offered:
/// no replica runs that job (it was removed from the schedule, or every scheduler is down).
pub const RUN_COMMAND_TTL: TimeDelta = TimeDelta::minutes(10);

/// A backfill's slots not run within this long are no longer offered (it bounds what each poll
/// reads: the commands of the last week, by `requested_at`'s index).
pub const BACKFILL_TTL: TimeDelta = TimeDelta::days(7);

/// What became of a pause, a resume or a cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acted<T> {
    Done(T),
    /// The job is not paused (a resume), or the run has ended (a cancel).
    Nothing,
}

/// A run as a cancel finds it.
#[derive(Debug, Clone, FromRow)]
pub struct RunToCancel {
    pub agent_name: String,
    pub run_key: Option<Uuid>,
    pub status: String,
}

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

/// A run asked for, or a backfill's slot, not yet started.
#[derive(Debug, FromRow)]
struct PendingRun {
    kind: String,
    job: String,
    run_key: Uuid,
    params: Option<String>,
    scheduled_for: Option<DateTime<Utc>>,
    batch: Option<Uuid>,
    max_parallel: Option<i32>,
}

impl Store {
    /// The cron and time zone of `job`, if a scheduler published it.
    pub async fn published_job(&self, job: &str) -> Result<Option<(String, String)>, StoreError> {
        let rows: Vec<(Option<String>, Option<String>)> = self
            .fetch(
                Query::select()
                    .columns([AgentExpectations::Cron, AgentExpectations::Timezone])
                    .from(AgentExpectations::Table)
                    .and_where(Expr::col(AgentExpectations::Source).eq("scheduler"))
                    .and_where(Expr::col(AgentExpectations::Name).eq(job))
                    .limit(1),
            )
            .await?;
        Ok(rows.into_iter().next().and_then(|(cron, tz)| cron.zip(tz)))
    }

    /// The jobs the schedulers published that `access` may see, by name: their cron, next slot,
    /// running runs and pause.
    pub async fn list_jobs(
        &self,
        access: &AgentAccess,
        now: DateTime<Utc>,
    ) -> Result<Vec<JobView>, StoreError> {
        let mut jobs = Query::select();
        jobs.columns([
            AgentExpectations::Name,
            AgentExpectations::Cron,
            AgentExpectations::Timezone,
            AgentExpectations::CatchupWindow,
            AgentExpectations::Jitter,
            AgentExpectations::PauseAfterFailures,
        ])
        .from(AgentExpectations::Table)
        .and_where(Expr::col(AgentExpectations::Source).eq("scheduler"))
        .and_where(Expr::col(AgentExpectations::Cron).is_not_null())
        .order_by(AgentExpectations::Name, Order::Asc);
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
                let next_slot = Cadence::from_columns(Some(&row.cron), Some(&row.timezone), None)
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

    /// The running run of `job` that holds its exclusive key (`concurrency_policy = forbid`):
    /// a run asked for now would not run beside it.
    pub async fn exclusive_run(&self, job: &str) -> Result<Option<(i64, Uuid)>, StoreError> {
        let rows: Vec<(i64, Option<Uuid>)> = self
            .fetch(
                Query::select()
                    .columns([AgentRuns::Id, AgentRuns::RunKey])
                    .from(AgentRuns::Table)
                    .and_where(Expr::col(AgentRuns::AgentName).eq(job))
                    .and_where(Expr::col(AgentRuns::Status).eq(RunStatus::Running.as_str()))
                    .and_where(Expr::col(AgentRuns::ExclusiveKey).is_not_null())
                    .limit(1),
            )
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .map(|(id, key)| (id, key.unwrap_or_default())))
    }

    /// Asks the schedulers to run `job` now under `run_key`, with `params` over its own.
    pub async fn request_run(
        &self,
        run_key: Uuid,
        params: Option<&Map<String, Value>>,
        audit: Audit<'_>,
    ) -> Result<(), StoreError> {
        let params = params
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::internal("writing a run's params", e))?;
        let mut tx = Tx::begin(self).await?;
        tx.execute(
            Query::insert()
                .into_table(JobCommands::Table)
                .columns([
                    JobCommands::Kind,
                    JobCommands::Job,
                    JobCommands::RunKey,
                    JobCommands::Params,
                    JobCommands::RequestedBy,
                    JobCommands::RequestedAt,
                ])
                .values_panic([
                    "run".into(),
                    audit.job.into(),
                    run_key.into(),
                    params.into(),
                    audit.actor.into(),
                    audit.at.into(),
                ]),
        )
        .await?;
        tx.audit(&audit).await?;
        tx.commit().await
    }

    /// Runs now `running` per backfill.
    async fn backfills_running(&self) -> Result<HashMap<Uuid, i64>, StoreError> {
        let select = Query::select()
            .column((JobCommands::Table, JobCommands::Batch))
            .expr(Func::count(Expr::col((AgentRuns::Table, AgentRuns::Id))))
            .from(JobCommands::Table)
            .inner_join(
                AgentRuns::Table,
                Expr::col((AgentRuns::Table, AgentRuns::RunKey))
                    .equals((JobCommands::Table, JobCommands::RunKey))
                    .and(
                        Expr::col((AgentRuns::Table, AgentRuns::AgentName))
                            .equals((JobCommands::Table, JobCommands::Job)),
                    ),
            )
            .and_where(Expr::col((JobCommands::Table, JobCommands::Kind)).eq("backfill"))
            .and_where(
                Expr::col((AgentRuns::Table, AgentRuns::Status)).eq(RunStatus::Running.as_str()),
            )
            .group_by_col((JobCommands::Table, JobCommands::Batch))
            .take();
        Ok(self
            .fetch::<(Uuid, i64), _>(&select)
            .await?
            .into_iter()
            .collect())
    }

    /// Asks the schedulers to run `slots` of `job` (each with its slot's run key), at most
    /// `max_parallel` at once: the number of slots asked for, those that ran or were asked for
    /// before left out.
    pub async fn request_backfill(
        &self,
        slots: &[(DateTime<Utc>, Uuid)],
        max_parallel: u32,
        audit: Audit<'_>,
    ) -> Result<usize, StoreError> {
        let job = audit.job;
        let mut tx = Tx::begin(self).await?;
        let mut ran = std::collections::HashSet::new();
        for keys in slots.chunks(500) {
            let stored: Vec<(Option<Uuid>,)> = tx
                .fetch(
                    Query::select()
                        .column(AgentRuns::RunKey)
                        .from(AgentRuns::Table)
                        .and_where(Expr::col(AgentRuns::AgentName).eq(job))
                        .and_where(
                            Expr::col(AgentRuns::RunKey).is_in(keys.iter().map(|(_, key)| *key)),
                        ),
                )
                .await?;
            ran.extend(stored.into_iter().filter_map(|(key,)| key));
        }
        let batch = Uuid::new_v4();
        let mut asked = 0;
        for (slot, key) in slots.iter().filter(|(_, key)| !ran.contains(key)) {
            asked += tx
                .execute(
                    Query::insert()
                        .into_table(JobCommands::Table)
                        .columns([
                            JobCommands::Kind,
                            JobCommands::Job,
                            JobCommands::RunKey,
                            JobCommands::ScheduledFor,
                            JobCommands::Batch,
                            JobCommands::MaxParallel,
                            JobCommands::RequestedBy,
                            JobCommands::RequestedAt,
                        ])
                        .values_panic([
                            "backfill".into(),
                            job.into(),
                            (*key).into(),
                            (*slot).into(),
                            batch.into(),
                            i32::try_from(max_parallel).unwrap_or(i32::MAX).into(),
                            audit.actor.into(),
                            audit.at.into(),
                        ])
                        .on_conflict(
                            sea_query::OnConflict::columns([
                                JobCommands::Kind,
                                JobCommands::Job,
                                JobCommands::RunKey,
                            ])
                            .do_nothing()
                            .to_owned(),
                        ),
                )
                .await?;
        }
        let asked = usize::try_from(asked).unwrap_or(usize::MAX);
        let audit = Audit {
            details: Some(match audit.details {
                Some(Value::Object(mut details)) => {
                    details.insert("slots".into(), asked.into());
                    Value::Object(details)
                }
                _ => serde_json::json!({ "slots": asked }),
            }),
            ..audit
        };
        tx.audit(&audit).await?;
        tx.commit().await?;
        Ok(asked)
    }

    /// The run `id`, as a cancel needs it.
    pub async fn run_to_cancel(&self, id: i64) -> Result<Option<RunToCancel>, StoreError> {
        let select = Query::select()
            .columns([AgentRuns::AgentName, AgentRuns::RunKey, AgentRuns::Status])
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::Id).eq(id))
            .take();
        Ok(self.fetch(&select).await?.into_iter().next())
    }

    /// Asks the scheduler running `run_key` to cancel it, for `reason` (the run's error to be).
    pub async fn request_cancel(&self, reason: &str, audit: Audit<'_>) -> Result<(), StoreError> {
        let mut tx = Tx::begin(self).await?;
        tx.execute(
            Query::insert()
                .into_table(JobCommands::Table)
                .columns([
                    JobCommands::Kind,
                    JobCommands::Job,
                    JobCommands::RunKey,
                    JobCommands::Reason,
                    JobCommands::RequestedBy,
                    JobCommands::RequestedAt,
                ])
                .values_panic([
                    "cancel".into(),
                    audit.job.into(),
                    audit.run_key.into(),
                    reason.into(),
                    audit.actor.into(),
                    audit.at.into(),
                ])
                // Cancelled twice: the first reason stands; both are audited.
                .on_conflict(
                    sea_query::OnConflict::columns([
                        JobCommands::Kind,
                        JobCommands::Job,
                        JobCommands::RunKey,
                    ])
                    .do_nothing()
                    .to_owned(),
                ),
        )
        .await?;
        tx.audit(&audit).await?;
        tx.commit().await
    }

    /// What the scheduler replica `claimant` is to do now about the jobs `access` allows: the
    /// pauses in force, the runs asked for and not yet started, the cancels of its runs.
    pub async fn commands_for(
        &self,
        claimant: &str,
        access: &AgentAccess,
        now: DateTime<Utc>,
    ) -> Result<Commands, StoreError> {
        let paused = self
            .pauses_in_force(access, now)
            .await?
            .into_iter()
            .map(|(job, pause)| PausedJob {
                job,
                until: pause.until,
            })
            .collect();

        let runs_table = Alias::new("r");
        let run_of_command = Query::select()
            .expr(Expr::val(1))
            .from_as(AgentRuns::Table, runs_table.clone())
            .and_where(
                Expr::col((runs_table.clone(), AgentRuns::RunKey))
                    .equals((JobCommands::Table, JobCommands::RunKey)),
            )
            .and_where(
                Expr::col((runs_table.clone(), AgentRuns::AgentName))
                    .equals((JobCommands::Table, JobCommands::Job)),
            )
            .take();
        let mut pending = Query::select();
        pending
            .columns([
                (JobCommands::Table, JobCommands::Kind),
                (JobCommands::Table, JobCommands::Job),
                (JobCommands::Table, JobCommands::RunKey),
                (JobCommands::Table, JobCommands::Params),
                (JobCommands::Table, JobCommands::ScheduledFor),
                (JobCommands::Table, JobCommands::Batch),
                (JobCommands::Table, JobCommands::MaxParallel),
            ])
            .from(JobCommands::Table)
            .and_where(
                Expr::col((JobCommands::Table, JobCommands::RequestedAt)).gt(now - BACKFILL_TTL),
            )
            .cond_where(
                Cond::any()
                    .add(
                        Expr::col((JobCommands::Table, JobCommands::Kind))
                            .eq("run")
                            .and(
                                Expr::col((JobCommands::Table, JobCommands::RequestedAt))
                                    .gt(now - RUN_COMMAND_TTL),
                            ),
                    )
                    .add(Expr::col((JobCommands::Table, JobCommands::Kind)).eq("backfill")),
            )
            .and_where(Expr::exists(run_of_command).not())
            .order_by((JobCommands::Table, JobCommands::Id), Order::Asc);
        if let Some(access) = access.condition((JobCommands::Table, JobCommands::Job)) {
            pending.cond_where(access);
        }
        let pending: Vec<PendingRun> = self.fetch(&pending).await?;
        let mut room = if pending.iter().any(|p| p.batch.is_some()) {
            self.backfills_running().await?
        } else {
            HashMap::new()
        };
        let runs = pending
            .into_iter()
            .filter(|p| match p.batch {
                // A backfill's slots, oldest first, while fewer than its max_parallel run.
                Some(batch) => {
                    let running = room.entry(batch).or_insert(0);
                    let allowed = *running < i64::from(p.max_parallel.unwrap_or(1));
                    *running += 1;
                    allowed
                }
                None => p.kind == "run",
            })
            .map(|p| RunCommand {
                job: p.job,
                run_key: p.run_key,
                scheduled_for: p.scheduled_for,
                params: p.params.and_then(|p| serde_json::from_str(&p).ok()),
            })
            .collect();

        let mut cancels = Query::select();
        cancels
            .columns([
                (JobCommands::Table, JobCommands::Job),
                (JobCommands::Table, JobCommands::RunKey),
                (JobCommands::Table, JobCommands::Reason),
            ])
            .from(JobCommands::Table)
            .inner_join(
                AgentRuns::Table,
                Expr::col((AgentRuns::Table, AgentRuns::RunKey))
                    .equals((JobCommands::Table, JobCommands::RunKey))
                    .and(
                        Expr::col((AgentRuns::Table, AgentRuns::AgentName))
                            .equals((JobCommands::Table, JobCommands::Job)),
                    ),
            )
            .and_where(Expr::col((JobCommands::Table, JobCommands::Kind)).eq("cancel"))
            .and_where(
                Expr::col((AgentRuns::Table, AgentRuns::Status)).eq(RunStatus::Running.as_str()),
            )
            .and_where(Expr::col((AgentRuns::Table, AgentRuns::Claimant)).eq(claimant));
        if let Some(access) = access.condition((JobCommands::Table, JobCommands::Job)) {
            cancels.cond_where(access);
        }
        let cancels = self
            .fetch::<(String, Uuid, Option<String>), _>(&cancels)
            .await?
            .into_iter()
            .map(|(job, run_key, reason)| CancelCommand {
                job,
                run_key,
                reason: reason.unwrap_or_else(|| "cancelled".into()),
            })
            .collect();
        Ok(Commands {
            paused,
            runs,
            cancels,
        })
    }
}
