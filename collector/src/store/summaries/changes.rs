//! What the watcher reads of the summaries: the agents whose summaries changed since its last
//! pass (a cursor in `watcher_state`, less a margin for transactions that committed after it
//! read), and each agent's latest run and success (the table `agents`).

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use sea_query::{Expr, ExprTrait, OnConflict, Query, SelectStatement};
use sqlx::FromRow;

use crate::store::tables::{AgentDailySummaries, Agents, WatcherState};
use crate::store::{Store, StoreError, Tx};

/// `watcher_state`'s row for the summaries judged.
const SUMMARIES_CURSOR: &str = "summaries";

/// Up to this many agents are named in a query; past it, the query takes the changed ones as
/// a subquery (a long list costs more, and meets the limit on bound parameters).
pub const KNOWN_BY_NAME: usize = 500;

/// An agent's summary of one day, as the watcher judges its latest run from it.
#[derive(Debug, Clone, FromRow)]
pub struct SummaryChange {
    pub agent_name: String,
    pub day: NaiveDate,
    pub last_status: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub max_duration_ms: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

/// The summaries of the last two days of the agents whose summaries changed after the cursor.
pub struct SummaryChanges {
    /// Both days of each agent that changed: its latest run may be on a day that did not.
    pub rows: Vec<SummaryChange>,
    /// The cursor as the last pass left it.
    pub seen_until: Option<DateTime<Utc>>,
    /// The names of the agents that changed, as a subquery.
    agents_query: SelectStatement,
}

impl SummaryChanges {
    /// `column` names one of `changed`: a list of names while short (an index can serve
    /// each), else the subquery of every agent that changed after the cursor.
    pub(in crate::store) fn agent_is_in<C>(&self, column: C, changed: &HashSet<String>) -> Expr
    where
        C: sea_query::IntoColumnRef,
    {
        if changed.len() <= KNOWN_BY_NAME {
            Expr::col(column).is_in(changed.iter().map(String::as_str))
        } else {
            Expr::col(column).in_subquery(self.agents_query.clone())
        }
    }
}

/// Each agent's latest run and latest success (of `agents`, or all), from the table `agents`
/// (the daily summaries over all days, one row per agent): finished runs, what both the
/// watcher and `GET /expectations` count a period from.
#[derive(Debug, Clone, FromRow)]
pub struct LastTimes {
    pub agent_name: String,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
}

/// The query of [`LastTimes`].
fn last_times(agents: Option<&[&str]>) -> SelectStatement {
    Query::select()
        .columns([Agents::AgentName, Agents::LastRunAt, Agents::LastSuccessAt])
        .from(Agents::Table)
        .and_where_option(
            agents.map(|agents| Expr::col(Agents::AgentName).is_in(agents.iter().copied())),
        )
        .to_owned()
}

impl Store {
    /// [`LastTimes`] of `agents`, or of all.
    pub async fn last_times(&self, agents: Option<&[&str]>) -> Result<Vec<LastTimes>, StoreError> {
        self.fetch(&last_times(agents)).await
    }
}

impl Tx {
    /// [`LastTimes`] of `agents`, or of all.
    pub(crate) async fn last_times(
        &mut self,
        agents: Option<&[&str]>,
    ) -> Result<Vec<LastTimes>, StoreError> {
        self.fetch(&last_times(agents)).await
    }

    /// The summaries from `since` on of the agents whose summaries changed after the cursor.
    pub(crate) async fn summary_changes(
        &mut self,
        since: NaiveDate,
    ) -> Result<SummaryChanges, StoreError> {
        let cursor = Query::select()
            .column(WatcherState::At)
            .from(WatcherState::Table)
            .and_where(Expr::col(WatcherState::Name).eq(SUMMARIES_CURSOR))
            .to_owned();
        let seen_until: Option<DateTime<Utc>> = self
            .fetch::<(DateTime<Utc>,), _>(&cursor)
            .await?
            .pop()
            .map(|(at,)| at);
        let mut select = Query::select();
        select
            .columns([
                AgentDailySummaries::AgentName,
                AgentDailySummaries::Day,
                AgentDailySummaries::LastStatus,
                AgentDailySummaries::LastRunAt,
                AgentDailySummaries::MaxDurationMs,
                AgentDailySummaries::UpdatedAt,
            ])
            .from(AgentDailySummaries::Table)
            .and_where(Expr::col(AgentDailySummaries::Day).gte(since));
        let agents_query = select
            .clone()
            .clear_selects()
            .column(AgentDailySummaries::AgentName)
            .and_where_option(
                seen_until.map(|seen| Expr::col(AgentDailySummaries::UpdatedAt).gt(seen)),
            )
            .to_owned();
        select
            .and_where(Expr::col(AgentDailySummaries::AgentName).in_subquery(agents_query.clone()));
        let rows = self.fetch(&select).await?;
        Ok(SummaryChanges {
            rows,
            seen_until,
            agents_query,
        })
    }

    /// Moves the cursor of the summaries judged to `until`.
    pub(crate) async fn set_summaries_cursor(
        &mut self,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut upsert = Query::insert();
        upsert
            .into_table(WatcherState::Table)
            .columns([WatcherState::Name, WatcherState::At])
            .values_panic([SUMMARIES_CURSOR.into(), until.into()])
            .on_conflict(
                OnConflict::column(WatcherState::Name)
                    .update_column(WatcherState::At)
                    .to_owned(),
            );
        self.execute(&upsert).await?;
        Ok(())
    }
}
