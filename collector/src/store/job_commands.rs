//! What operators ask the schedulers to do (`job_commands`: run now, backfill, cancel), each
//! with its row of `audit_log` in the same transaction, and what a replica is told when it
//! polls: those and the pauses in force (`job_pauses.rs`).
//!
//! The schedulers poll ([`Store::commands_for`]); nothing here reaches out to them. A run
//! command is pending until a run under its key exists (the replica whose claim the collector
//! grants runs it: exactly once), a cancel until the run it names has ended.

use std::collections::HashMap;

use agent_sdk::wire::{CancelCommand, Commands, PausedJob, RunCommand, RunStatus};
use chrono::{DateTime, TimeDelta, Utc};
use sea_query::{
    Alias, Cond, Expr, ExprTrait, Func, InsertStatement, IntoIden, OnConflict, Order, Query,
};
use serde_json::{Map, Value};
use sqlx::FromRow;
use uuid::Uuid;

use super::tables::{AgentRuns, JobCommands};
use super::{AgentAccess, Audit, Store, StoreError, Tx};

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

/// A run asked for, or a backfill's slot, not yet started.
#[derive(Debug, FromRow)]
struct PendingRun {
    job: String,
    run_key: Uuid,
    params: Option<String>,
    scheduled_for: Option<DateTime<Utc>>,
    batch: Option<Uuid>,
    max_parallel: Option<i32>,
}

impl Store {
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
        tx.execute(&insert_command(&Command {
            params,
            ..Command::new("run", run_key, &audit)
        }))
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
            .inner_join(AgentRuns::Table, run_of_command(AgentRuns::Table))
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
                .execute(&insert_command(&Command {
                    scheduled_for: Some(*slot),
                    batch: Some(batch),
                    max_parallel: Some(i32::try_from(max_parallel).unwrap_or(i32::MAX)),
                    ..Command::new("backfill", *key, &audit)
                }))
                .await?;
        }
        let asked = usize::try_from(asked).unwrap_or(usize::MAX);
        // The audit says how many slots were asked for, beside what the caller gave.
        let mut details = audit
            .details
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        details["slots"] = asked.into();
        let audit = Audit {
            details: Some(details),
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
        let run_key = audit
            .run_key
            .ok_or_else(|| StoreError::internal("asking for a cancel", "the audit names no run"))?;
        let mut tx = Tx::begin(self).await?;
        // Cancelled twice: the first reason stands; both are audited.
        tx.execute(&insert_command(&Command {
            reason: Some(reason),
            ..Command::new("cancel", run_key, &audit)
        }))
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

        let runs = Alias::new("r");
        let has_run = Query::select()
            .expr(Expr::val(1))
            .from_as(AgentRuns::Table, runs.clone())
            .cond_where(run_of_command(runs))
            .take();
        let mut pending = Query::select();
        pending
            .columns([
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
            .and_where(Expr::exists(has_run).not())
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
                // A run asked for.
                None => true,
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
            .inner_join(AgentRuns::Table, run_of_command(AgentRuns::Table))
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

/// A row of `job_commands`: what the kind asks, by whom and when.
struct Command<'a> {
    kind: &'static str,
    job: &'a str,
    run_key: Uuid,
    params: Option<String>,
    reason: Option<&'a str>,
    scheduled_for: Option<DateTime<Utc>>,
    batch: Option<Uuid>,
    max_parallel: Option<i32>,
    by: &'a str,
    at: DateTime<Utc>,
}

impl<'a> Command<'a> {
    /// A command of `kind` on `run_key`, of the job and by the actor `audit` names.
    fn new(kind: &'static str, run_key: Uuid, audit: &Audit<'a>) -> Self {
        Self {
            kind,
            job: audit.job,
            run_key,
            params: None,
            reason: None,
            scheduled_for: None,
            batch: None,
            max_parallel: None,
            by: audit.actor,
            at: audit.at,
        }
    }
}

/// `command`'s insert; nothing when the same kind of command of the job's run exists.
fn insert_command(command: &Command<'_>) -> InsertStatement {
    Query::insert()
        .into_table(JobCommands::Table)
        .columns([
            JobCommands::Kind,
            JobCommands::Job,
            JobCommands::RunKey,
            JobCommands::Params,
            JobCommands::Reason,
            JobCommands::ScheduledFor,
            JobCommands::Batch,
            JobCommands::MaxParallel,
            JobCommands::RequestedBy,
            JobCommands::RequestedAt,
        ])
        .values_panic([
            command.kind.into(),
            command.job.into(),
            command.run_key.into(),
            command.params.clone().into(),
            command.reason.into(),
            command.scheduled_for.into(),
            command.batch.into(),
            command.max_parallel.into(),
            command.by.into(),
            command.at.into(),
        ])
        .on_conflict(
            OnConflict::columns([JobCommands::Kind, JobCommands::Job, JobCommands::RunKey])
                .do_nothing()
                .to_owned(),
        )
        .take()
}

/// The run of `runs` (a name of `agent_runs`) a command is about: the job's run under its key.
fn run_of_command(runs: impl IntoIden + Clone) -> Cond {
    Cond::all()
        .add(
            Expr::col((runs.clone(), AgentRuns::RunKey))
                .equals((JobCommands::Table, JobCommands::RunKey)),
        )
        .add(Expr::col((runs, AgentRuns::AgentName)).equals((JobCommands::Table, JobCommands::Job)))
}
