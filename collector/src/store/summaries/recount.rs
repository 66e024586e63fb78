//! Runs counted into the summaries after the write: a run closed as overdue (it was `running`,
//! in no summary) is added; a day whose counted run changed (an overdue run's late result) is
//! counted again from its runs. Both by the rules the write applies (`sql/postgres/daily.sql`
//! and `latest.sql`; `sql/sqlite/daily_summaries.sql` and `agents.sql`), written once per
//! backend: a day or an agent's row counted again is deleted, then given its runs.

use agent_sdk::wire::RunStatus;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use sea_query::{Expr, ExprTrait, Order, Query};

use crate::store::tables::{AgentDailySummaries, AgentRuns, Agents};
use crate::store::{StoreError, Tx};

/// Which summaries a count goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum Counted {
    /// The daily summaries and the agents' rows.
    Both,
    /// The daily summaries only.
    Days,
    /// The agents' rows only.
    Latest,
}

impl Tx {
    /// Adds the finished runs `ids`, counted by no summary yet, to the summaries.
    pub(in crate::store) async fn add_to_summaries(
        &mut self,
        ids: &[i64],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.count_runs(ids, Counted::Both).await
    }

    /// `agent`'s summary of `day` counted again from its finished runs, and its row of
    /// `agents` from its latest run and latest success: none left, no row.
    pub(in crate::store) async fn recount(
        &mut self,
        agent: &str,
        day: NaiveDate,
    ) -> Result<(), StoreError> {
        let mut delete = Query::delete();
        delete
            .from_table(AgentDailySummaries::Table)
            .and_where(Expr::col(AgentDailySummaries::AgentName).eq(agent))
            .and_where(Expr::col(AgentDailySummaries::Day).eq(day));
        self.execute(&delete).await?;
        let ids = self.finished_runs_of_day(agent, day).await?;
        if !ids.is_empty() {
            self.count_runs(&ids, Counted::Days).await?;
        }
        let mut delete = Query::delete();
        delete
            .from_table(Agents::Table)
            .and_where(Expr::col(Agents::AgentName).eq(agent));
        self.execute(&delete).await?;
        let mut ids = Vec::new();
        for only_successes in [false, true] {
            ids.extend(self.latest_finished_run(agent, only_successes).await?);
        }
        if !ids.is_empty() {
            self.count_runs(&ids, Counted::Latest).await?;
        }
        Ok(())
    }

    /// The ids of `agent`'s finished runs that started on `day` (UTC).
    async fn finished_runs_of_day(
        &mut self,
        agent: &str,
        day: NaiveDate,
    ) -> Result<Vec<i64>, StoreError> {
        let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
        // A day either side, filtered here: the day a timestamp falls on is decided by chrono,
        // not by how a backend compares its stored text.
        let mut select = Query::select();
        select
            .columns([AgentRuns::Id, AgentRuns::StartedAt])
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::AgentName).eq(agent))
            .and_where(Expr::col(AgentRuns::StartedAt).gte(start - TimeDelta::days(1)))
            .and_where(Expr::col(AgentRuns::StartedAt).lt(start + TimeDelta::days(2)))
            .and_where(Expr::col(AgentRuns::Status).ne(RunStatus::Running.as_str()));
        let rows: Vec<(i64, DateTime<Utc>)> = self.fetch(&select).await?;
        Ok(rows
            .into_iter()
            .filter(|(_, at)| at.date_naive() == day)
            .map(|(id, _)| id)
            .collect())
    }

    /// The id of `agent`'s latest finished run (of its successful ones, with `only_successes`).
    async fn latest_finished_run(
        &mut self,
        agent: &str,
        only_successes: bool,
    ) -> Result<Option<i64>, StoreError> {
        let mut select = Query::select();
        select
            .column(AgentRuns::Id)
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::AgentName).eq(agent))
            .and_where(Expr::col(AgentRuns::Status).ne(RunStatus::Running.as_str()))
            .and_where_option(
                only_successes
                    .then(|| Expr::col(AgentRuns::Status).eq(RunStatus::Success.as_str())),
            )
            .order_by(AgentRuns::StartedAt, Order::Desc)
            .order_by(AgentRuns::Id, Order::Desc)
            .limit(1);
        Ok(self
            .fetch::<(i64,), _>(&select)
            .await?
            .pop()
            .map(|(id,)| id))
    }
}
