//! Pauses of jobs (`job_pauses`): made and ended by operators (`POST /jobs/{job}/pause`,
//! `/resume`) or by the watcher when a job fails too often (`pause_after_failures`), kept after
//! they end so that the watcher knows a slot inside one was skipped, not missed.

use std::collections::HashMap;

use agent_sdk::wire::JobPause;
use chrono::{DateTime, SubsecRound, Utc};
use sea_query::{Cond, Expr, ExprTrait, Query, SelectStatement};
use sqlx::FromRow;

use super::tables::JobPauses;
use super::{Acted, AgentAccess, Audit, Store, StoreError, Tx};

/// Who paused a job that paused itself (`pause_after_failures`), in `job_pauses` and the audit.
pub const SELF_PAUSED_BY: &str = "scheduler";

/// (job, since, until, resumed_at) of a pause.
type PauseEnds = (
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// A pause's end, as the watcher reads it: `None` while it lasts with no end set.
pub type PauseSpan = (DateTime<Utc>, Option<DateTime<Utc>>);

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
    /// The pauses in force at `now` of the jobs `access` allows, with their job.
    pub(super) async fn pauses_in_force(
        &self,
        access: &AgentAccess,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, JobPause)>, StoreError> {
        let mut pauses = select_pauses();
        pauses.cond_where(in_force(now));
        if let Some(access) = access.condition(JobPauses::Job) {
            pauses.cond_where(access);
        }
        Ok(self
            .fetch::<PauseRow, _>(&pauses)
            .await?
            .into_iter()
            .map(|row| (row.job.clone(), row.view()))
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
}

impl Tx {
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
