//! `POST /runs`: a `running` row, claimed by whoever inserted it first. PostgreSQL's (and
//! SQLite's) unique indexes are the whole coordination: of several claimants of one agent's
//! `run_key`, exactly one insert wins and the others find the row and who holds it; of an
//! agent's runs with one `exclusive_key`, one at a time is running. Both keys are an agent's
//! own: another agent's runs never hold them, so a token limited to other agents can neither
//! take an agent's slot nor learn of its runs from a refusal.

use agent_sdk::wire::{RunClaim, RunStatus};
use sea_query::{Expr, ExprTrait, InsertStatement, OnConflict, Query, SelectStatement};

use crate::domain::NewStart;
use crate::store::tables::AgentRuns;
use sqlx::PgPool;

use crate::store::{Store, StoreError};

/// What became of a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A `running` row was created: the caller runs the agent.
    Created(i64),
    /// The same claimant started this run before (a retried request): still its run.
    Again(i64),
    /// Another claimant holds this agent's `run_key`, or the run has finished, or a running run
    /// of the agent holds the start's exclusive key: the caller must not run it.
    Claimed(RunClaim),
}

/// `sql/postgres/start_run.sql`.
const START_RUN: &str = include_str!("../sql/postgres/start_run.sql");

/// (id, status, host, claimant) of the run that holds a key.
type Holder = (i64, String, Option<String>, Option<String>);

impl Store {
    /// Starts `start`'s run, unless its `run_key` is taken or its exclusive key held.
    pub async fn start_run(&self, start: &NewStart) -> Result<Started, StoreError> {
        // A holder gone between the insert and the look (its run ended): try again.
        for _ in 0..3 {
            if let Some(started) = self.try_start(start).await? {
                return Ok(started);
            }
        }
        Err(StoreError::internal(
            "starting a run",
            format!("run_key {}: neither inserted nor held", start.run_key),
        ))
    }

    async fn try_start(&self, start: &NewStart) -> Result<Option<Started>, StoreError> {
        if let Some(id) = self.insert_start(start).await? {
            return Ok(Some(Started::Created(id)));
        }

        // Refused: the insert waited for a concurrent holder to commit, so it is there to read.
        let agent = start.agent_name.as_str();
        let mut holders: Vec<Holder> = self
            .fetch(&holder(
                agent,
                Expr::col(AgentRuns::RunKey).eq(start.run_key),
            ))
            .await?;
        let by_key = !holders.is_empty();
        if !by_key && let Some(exclusive) = &start.exclusive {
            let running = Expr::col(AgentRuns::ExclusiveKey)
                .eq(exclusive.as_str())
                .and(Expr::col(AgentRuns::Status).eq(RunStatus::Running.as_str()));
            holders = self.fetch(&holder(agent, running)).await?;
        }
        let Some((run_id, status, host, claimant)) = holders.into_iter().next() else {
            return Ok(None);
        };
        let status = RunStatus::parse(&status).ok_or_else(|| {
            StoreError::internal("starting a run", format!("unknown run status {status:?}"))
        })?;
        let same_run = by_key
            && status == RunStatus::Running
            && claimant.as_deref() == Some(start.claimant.as_str());
        Ok(Some(if same_run {
            Started::Again(run_id)
        } else {
            Started::Claimed(RunClaim {
                run_id,
                status,
                host,
                claimant,
            })
        }))
    }
}

/// The start's insert on PostgreSQL (one statement, `sql/postgres/start_run.sql`, one round
/// trip): the new row's id, or `None` when an index refused it.
///
/// It commits durably (the WAL flushed before the `201`): a claim is what keeps a slot from
/// running twice, so one answered must survive a crash of PostgreSQL. (It once committed with
/// `synchronous_commit = off` for the rate of whole runs; a crash could then lose the claims of
/// its last fraction of a second, and a retried CronJob pod run such a slot again.
/// docs/performance.md measures what durability costs.)
pub(in crate::store) async fn insert_postgres(
    pool: &PgPool,
    start: &NewStart,
) -> Result<Option<i64>, StoreError> {
    let id: Option<(i64,)> = sqlx::query_as(START_RUN)
        .bind(start.run_key)
        .bind(start.agent_name.as_str())
        .bind(start.started_at)
        .bind(start.trigger.as_str())
        .bind(start.scheduled_for)
        .bind(start.host.as_deref())
        .bind(start.claimant.as_str())
        .bind(start.exclusive.as_deref())
        .bind(start.deadline)
        .fetch_optional(pool)
        .await?;
    Ok(id.map(|(id,)| id))
}

/// The start's insert on SQLite (PostgreSQL's is `sql/postgres/start_run.sql`): either
/// unique index may refuse it, the run_key's or the running exclusive key's.
pub(in crate::store) fn insert_sqlite(start: &NewStart) -> Result<InsertStatement, StoreError> {
    Ok(Query::insert()
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
            AgentRuns::ExclusiveKey,
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
            start.exclusive.as_deref().into(),
            start.deadline.into(),
        ])
        .map_err(|e| StoreError::internal("building the start's insert", e))?
        // Either index refuses it: the run_key's, or the running exclusive key's.
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .returning_col(AgentRuns::Id)
        .to_owned())
}

/// `agent`'s run `condition` finds, as a [`Holder`].
fn holder(agent: &str, condition: Expr) -> SelectStatement {
    Query::select()
        .columns([
            AgentRuns::Id,
            AgentRuns::Status,
            AgentRuns::Host,
            AgentRuns::Claimant,
        ])
        .from(AgentRuns::Table)
        .and_where(Expr::col(AgentRuns::AgentName).eq(agent))
        .and_where(condition)
        .take()
}
