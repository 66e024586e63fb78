//! Operating jobs: their pauses (`job_pauses`, kept after they end so that the watcher knows a
//! slot inside one was skipped, not missed), the commands for the schedulers (`job_commands`:
//! run now, cancel) and, in the same transaction as each, its row of `audit_log`.
//!
//! The schedulers poll ([`Store::commands_for`]); nothing here reaches out to them. A run
//! command is pending until a run under its key exists (the replica whose claim the collector
//! grants runs it: exactly once), a cancel until the run it names has ended.

use std::collections::HashMap;

use agent_sdk::wire::{
    CancelCommand, Commands, JobPause, JobView, PausedJob, RunCommand, RunStatus,
};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use sea_query::{Alias, Cond, Expr, ExprTrait, Func, Order, Query, SelectStatement};
use serde_json::{Map, Value};
use sqlx::FromRow;
use uuid::Uuid;

use super::tables::{AgentExpectations, AgentRuns, JobCommands, JobPauses};
use super::{AgentAccess, Audit, Store, StoreError, Tx};
use crate::domain::Cadence;

/// Who paused a job that paused itself (`pause_after_failures`), in `job_pauses` and the audit.
pub const SELF_PAUSED_BY: &str = "scheduler";

/// A run asked for by hand that no scheduler started within this long is no longer offered:
/// no replica runs that job (it was removed from the schedule, or every scheduler is down).
pub const RUN_COMMAND_TTL: TimeDelta = TimeDelta::minutes(10);

/// A backfill's slots not run within this long are no longer offered (it bounds what each poll
/// reads: the commands of the last week, by `requested_at`'s index).
pub const BACKFILL_TTL: TimeDelta = TimeDelta::days(7);

/// (job, since, until, resumed_at) of a pause.
type PauseEnds = (
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// A pause's end, as the watcher reads it: `None` while it lasts with no end set.
pub type PauseSpan = (DateTime<Utc>, Option<DateTime<Utc>>);

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

#[derive(Debug, FromRow)]
struct PauseRow {
    job: String,
    paused_by: String,
    note: Option<String>,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
}

impl PauseRow {
    fn view(self) -> JobPause {
        JobPause {
            paused_by: self.paused_by,
            note: self.note,
            since: self.since,
            until: self.until,
        }
    }
}

/// Pauses in force at `now`: not resumed, and not past their `until`.
fn in_force(now: DateTime<Utc>) -> Cond {
    Cond::all()
        .add(Expr::col(JobPauses::ResumedAt).is_null())
        .add(
            Cond::any()
                .add(Expr::col(JobPauses::Until).is_null())
                .add(Expr::col(JobPauses::Until).gt(now)),
        )
}

/// The columns of a pause as read and written: job, by whom, note, since, until.
const PAUSE_COLUMNS: [JobPauses; 5] = [
    JobPauses::Job,
    JobPauses::PausedBy,
    JobPauses::Note,
    JobPauses::Since,
    JobPauses::Until,
];

fn select_pauses() -> SelectStatement {
    Query::select()
        .columns(PAUSE_COLUMNS)
        .from(JobPauses::Table)
        .take()
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

        let mut pauses = select_pauses();
        pauses.cond_where(in_force(now));
        if let Some(access) = access.condition(JobPauses::Job) {
            pauses.cond_where(access);
        }
        let mut pauses: HashMap<String, JobPause> = self
            .fetch::<PauseRow, _>(&pauses)
            .await?
            .into_iter()
            .map(|row| (row.job.clone(), row.view()))
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

    /// Pauses `job` (a pause in force is replaced: its note and end are the new ones).
    pub async fn pause_job(
        &self,
        until: Option<DateTime<Utc>>,
        audit: Audit<'_>,
    ) -> Result<JobPause, StoreError> {
        let now = audit.at.trunc_subsecs(6);
        let mut tx = Tx::begin(self).await?;
        // A pause past its `until` ended then: closed, so that the new one may be open.
        close_expired(&mut tx, audit.job, now).await?;
        let open: Vec<PauseRow> = tx
            .fetch(
                select_pauses()
                    .and_where(Expr::col(JobPauses::Job).eq(audit.job))
                    .and_where(Expr::col(JobPauses::ResumedAt).is_null()),
            )
            .await?;
        let since = match open.first() {
            Some(pause) => {
                tx.execute(
                    Query::update()
                        .table(JobPauses::Table)
                        .values([
                            (JobPauses::PausedBy, audit.actor.into()),
                            (JobPauses::Note, audit.note.into()),
                            (JobPauses::Until, until.into()),
                        ])
                        .and_where(Expr::col(JobPauses::Job).eq(audit.job))
                        .and_where(Expr::col(JobPauses::ResumedAt).is_null()),
                )
                .await?;
                pause.since
            }
            None => {
                tx.execute(&insert_pause(
                    audit.job,
                    audit.actor,
                    audit.note,
                    now,
                    until,
                ))
                .await?;
                now
            }
        };
        let pause = JobPause {
            paused_by: audit.actor.to_owned(),
            note: audit.note.map(str::to_owned),
            since,
            until,
        };
        tx.audit(&audit).await?;
        tx.commit().await?;
        Ok(pause)
    }

    /// Resumes `job`: `Nothing` when no pause is in force.
    pub async fn resume_job(&self, audit: Audit<'_>) -> Result<Acted<()>, StoreError> {
        let now = audit.at.trunc_subsecs(6);
        let mut tx = Tx::begin(self).await?;
        close_expired(&mut tx, audit.job, now).await?;
        let resumed = tx
            .execute(
                Query::update()
                    .table(JobPauses::Table)
                    .values([
                        (JobPauses::ResumedAt, now.into()),
                        (JobPauses::ResumedBy, audit.actor.into()),
                    ])
                    .and_where(Expr::col(JobPauses::Job).eq(audit.job))
                    .and_where(Expr::col(JobPauses::ResumedAt).is_null()),
            )
            .await?;
        if resumed == 0 {
            return Ok(Acted::Nothing);
        }
        tx.audit(&audit).await?;
        tx.commit().await?;
        Ok(Acted::Done(()))
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
        let mut pauses = select_pauses();
        pauses.cond_where(in_force(now));
        if let Some(access) = access.condition(JobPauses::Job) {
            pauses.cond_where(access);
        }
        let paused = self
            .fetch::<PauseRow, _>(&pauses)
            .await?
            .into_iter()
            .map(|p| PausedJob {
                job: p.job,
                until: p.until,
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

impl Tx {
    /// Per job a scheduler published with `pause_after_failures`: that number.
    pub(crate) async fn pause_after_failures(
        &mut self,
    ) -> Result<HashMap<String, u32>, StoreError> {
        let rows: Vec<(String, Option<i64>)> = self
            .fetch(
                Query::select()
                    .columns([
                        AgentExpectations::Name,
                        AgentExpectations::PauseAfterFailures,
                    ])
                    .from(AgentExpectations::Table)
                    .and_where(Expr::col(AgentExpectations::Source).eq("scheduler"))
                    .and_where(Expr::col(AgentExpectations::PauseAfterFailures).is_not_null()),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(job, n)| Some((job, u32::try_from(n?).ok()?)))
            .collect())
    }

    /// Pauses `job` on its own behalf (`paused_by` and the audit's actor `scheduler`) after
    /// `failures` failed runs in a row, until resumed.
    pub(crate) async fn pause_after_failures_of(
        &mut self,
        job: &str,
        failures: u32,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = now.trunc_subsecs(6);
        close_expired(self, job, now).await?;
        let note = format!("paused itself after {failures} failed runs in a row");
        self.execute(
            insert_pause(job, SELF_PAUSED_BY, Some(&note), now, None)
                .on_conflict(sea_query::OnConflict::new().do_nothing().to_owned()),
        )
        .await?;
        self.audit(&Audit {
            actor: SELF_PAUSED_BY,
            action: agent_sdk::wire::AuditAction::Pause,
            job,
            run_key: None,
            note: Some(&note),
            details: Some(serde_json::json!({ "after_failures": failures })),
            at: now,
        })
        .await
    }

    /// Every pause that ended after `since` or has not ended, by job: what the watcher needs
    /// to tell a skipped slot from a missed one.
    pub(crate) async fn pauses_since(
        &mut self,
        since: DateTime<Utc>,
    ) -> Result<HashMap<String, Vec<PauseSpan>>, StoreError> {
        let rows: Vec<PauseEnds> = self
            .fetch(
                Query::select()
                    .columns([
                        JobPauses::Job,
                        JobPauses::Since,
                        JobPauses::Until,
                        JobPauses::ResumedAt,
                    ])
                    .from(JobPauses::Table)
                    .cond_where(
                        Cond::any()
                            .add(Expr::col(JobPauses::ResumedAt).gt(since))
                            .add(
                                Expr::col(JobPauses::ResumedAt).is_null().and(
                                    Expr::col(JobPauses::Until)
                                        .is_null()
                                        .or(Expr::col(JobPauses::Until).gt(since)),
                                ),
                            ),
                    ),
            )
            .await?;
        let mut pauses: HashMap<String, Vec<PauseSpan>> = HashMap::new();
        for (job, start, until, resumed_at) in rows {
            let end = match (until, resumed_at) {
                (Some(until), Some(resumed)) => Some(Ord::min(until, resumed)),
                (until, resumed) => until.or(resumed),
            };
            pauses.entry(job).or_default().push((start, end));
        }
        Ok(pauses)
    }
}

/// A new pause of `job` by `by`, from `since` to `until` (`None`: until resumed).
fn insert_pause(
    job: &str,
    by: &str,
    note: Option<&str>,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> sea_query::InsertStatement {
    Query::insert()
        .into_table(JobPauses::Table)
        .columns(PAUSE_COLUMNS)
        .values_panic([
            job.into(),
            by.into(),
            note.into(),
            since.into(),
            until.into(),
        ])
        .take()
}

/// Closes `job`'s open pause if its `until` has passed (it ended then).
async fn close_expired(tx: &mut Tx, job: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    tx.execute(
        Query::update()
            .table(JobPauses::Table)
            .value(JobPauses::ResumedAt, Expr::col(JobPauses::Until))
            .and_where(Expr::col(JobPauses::Job).eq(job))
            .and_where(Expr::col(JobPauses::ResumedAt).is_null())
            .and_where(Expr::col(JobPauses::Until).lte(now)),
    )
    .await?;
    Ok(())
}
