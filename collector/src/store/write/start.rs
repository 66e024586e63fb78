//! `POST /runs`: a `running` row, claimed by whoever inserted it first. PostgreSQL's (and
//! SQLite's) unique constraint on `run_key` is the whole coordination: of several claimants of
//! one key, exactly one insert wins; the others find the row and who holds it.

use agent_sdk::wire::{RunClaim, RunStatus};
use sea_query::{Expr, ExprTrait, OnConflict, Query};

use crate::domain::NewStart;
use crate::store::schema::AgentRuns;
use crate::store::{Store, StoreError};

/// What became of a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A `running` row was created: the caller runs the agent.
    Created(i64),
    /// The same claimant started this run before (a retried request): still its run.
    Again(i64),
    /// Another claimant holds this `run_key`, or the run has finished (or belongs to another
    /// agent): the caller must not run it.
    Claimed(RunClaim),
}

impl Store {
    /// Starts `start`'s run, unless its `run_key` is taken.
    pub async fn start_run(&self, start: &NewStart) -> Result<Started, StoreError> {
        let mut insert = Query::insert();
        insert
            .into_table(AgentRuns::Table)
            .columns([
                AgentRuns::RunKey,
                AgentRuns::AgentName,
                AgentRuns::StartedAt,
                AgentRuns::Status,
                AgentRuns::Trigger,
                AgentRuns::ScheduledFor,
                AgentRuns::Host,
                AgentRuns::Claimant,
                AgentRuns::Deadline,
            ])
            .values([
                start.run_key.into(),
                start.agent_name.as_str().into(),
                start.started_at.into(),
                RunStatus::Running.as_str().into(),
                start.trigger.as_str().into(),
                start.scheduled_for.into(),
                start.host.as_deref().into(),
                start.claimant.as_str().into(),
                start.deadline.into(),
            ])
            .map_err(|e| StoreError::internal("building the start's insert", e))?
            .on_conflict(
                OnConflict::column(AgentRuns::RunKey)
                    .do_nothing()
                    .to_owned(),
            )
            .returning_col(AgentRuns::Id);
        if let Some((id,)) = self.fetch::<(i64,), _>(&insert).await?.first() {
            return Ok(Started::Created(*id));
        }

        // The key was taken: by this claimant before, or by another. The insert waited for a
        // concurrent holder to commit, so the row is there to read.
        let select = Query::select()
            .columns([
                AgentRuns::Id,
                AgentRuns::AgentName,
                AgentRuns::Status,
                AgentRuns::Host,
                AgentRuns::Claimant,
            ])
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::RunKey).eq(start.run_key))
            .take();
        type Holder = (i64, String, String, Option<String>, Option<String>);
        let rows: Vec<Holder> = self.fetch(&select).await?;
        let Some((run_id, agent_name, status, host, claimant)) = rows.into_iter().next() else {
            return Err(StoreError::internal(
                "starting a run",
                format!("run_key {} was neither inserted nor found", start.run_key),
            ));
        };
        let status = RunStatus::parse(&status).ok_or_else(|| {
            StoreError::internal("starting a run", format!("unknown run status {status:?}"))
        })?;
        let same_run = status == RunStatus::Running
            && agent_name == start.agent_name.as_str()
            && claimant.as_deref() == Some(start.claimant.as_str());
        Ok(if same_run {
            Started::Again(run_id)
        } else {
            Started::Claimed(RunClaim {
                run_id,
                status,
                host,
                claimant,
            })
        })
    }
}
