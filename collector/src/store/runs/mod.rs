//! Runs: the write (runs, their metrics and both daily aggregates in one transaction), the
//! start (`claims.rs`), the closing of overdue runs (`overdue.rs`), the listings (`listing.rs`).
//!
//! Shared by both backends (here): which reports of a batch are written (the first with each
//! `run_key` of an agent: a key is unique per agent, so two agents' keys never collide), the lookup of keys stored before, one outcome per report. Per backend, with the
//! same signature, side by side: the write itself ([`postgres::insert_new`]: one statement,
//! columns as arrays, data-modifying CTEs; [`sqlite::insert_new`]: several statements in one
//! `BEGIN IMMEDIATE` transaction, per-metric sums in exact decimals computed in Rust).
//!
//! # The summary rules (both backends; docs/architecture.md)
//!
//! Summaries are computed from the runs a transaction inserts, never re-read from the tables,
//! and merged into the stored row of their key in the same transaction, so a run is counted
//! exactly once (a repeated `run_key` inserts nothing, so counts nothing):
//! - `agent_daily_summaries`, per agent and UTC day of `started_at`: `run_count`,
//!   `success_count`, `failure_count` and `total_duration_ms` add up; `min_duration_ms` and
//!   `max_duration_ms` keep the extreme; `last_run_at` is the latest `started_at`, and
//!   `last_status` that run's status (ties: the higher id, i.e. the later stored);
//!   `last_success_at` the latest `started_at` of a successful run.
//! - `agent_metric_daily_summaries`, per agent, numeric metric and UTC day of `recorded_at`
//!   (the run's `finished_at`): `value_count` and `value_sum` add up (exact decimals),
//!   `value_min` and `value_max` keep the extreme, `last_value` is the value with the latest
//!   `recorded_at` (ties: the later stored), `last_recorded_at` that time.
//! - `agents`, per agent: `last_run_at`, `last_status` and `last_success_at` by the rules of
//!   `agent_daily_summaries` over all days.
//!
//! Written once per backend (`sql/postgres/daily.sql` and `latest.sql`;
//! `sql/sqlite/daily_summaries.sql`, `agents.sql` and `metric_day.rs`) and applied to the runs
//! a write inserts, or to stored runs by id: a run closed as overdue is added then, and a day
//! whose counted run changed is deleted and given its runs again (`summaries/recount.rs`).
//! Rows are upserted in key order, so concurrent transactions cannot deadlock on them. The
//! collector's tests run on both backends and hold both implementations to the same answers
//! (collector/tests/api/summaries_alike.rs: the same reports give the same rows on both).

pub(super) mod claims;
mod listing;
mod metric_day;
mod overdue;
pub(super) mod postgres;
pub(super) mod sqlite;

pub use claims::Started;
pub use listing::{MetricFilter, RecentRun, RunFilter};
pub use overdue::OVERDUE_LOCK;
pub use postgres::HeldConnection;

use std::collections::HashMap;

use agent_sdk::wire::RunStatus;
use chrono::{DateTime, Utc};
use sea_query::{Expr, ExprTrait, Query};
use uuid::Uuid;

use super::tables::{AgentMetrics, AgentRuns};
use super::{Store, StoreError};
use crate::domain::{NewMetric, NewRun, StoredValue};

/// A run written: its `run_key`, its agent, its id.
pub(in crate::store) type Written = (Uuid, String, i64);

/// What happened to one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new run, or a `running` one (`POST /runs`) completed, with its id.
    Created(i64),
    /// Its `run_key` was stored before (or earlier in the same batch) with the same report:
    /// nothing was written.
    Existing(i64),
    /// Its agent's `run_key` belongs to another report: a finished run with other values
    /// (status, times, error, metrics). Nothing was written.
    Conflict(i64),
}

impl Stored {
    pub fn run_id(self) -> i64 {
        match self {
            Self::Created(id) | Self::Existing(id) | Self::Conflict(id) => id,
        }
    }
}

impl Store {
    /// Stores `runs` in one transaction and returns one outcome per run, in order.
    ///
    /// A run whose `run_key` is already stored for its agent — by an earlier request, a
    /// concurrent one, or an earlier element of `runs` — is not written again, unless that run
    /// is `running` (started by `POST /runs`): the report completes it. Another agent's run
    /// under the same key is another run. Daily summaries count each
    /// run once, when it is written finished. A repeated key is the same run only with the
    /// same report (agent, status, times, error, metrics: [`same_report`]); with another, the
    /// outcome is [`Stored::Conflict`], as idempotency keys go (a key names one request).
    pub async fn store_runs(&self, runs: &[NewRun]) -> Result<Vec<Stored>, StoreError> {
        self.store_runs_with(runs, None).await
    }

    /// [`Store::store_runs`], on the connection `held` keeps from one call to the next where
    /// given (PostgreSQL; SQLite has its one writer's pool): the ingest writers' way.
    pub async fn store_runs_with(
        &self,
        runs: &[NewRun],
        held: Option<&mut HeldConnection>,
    ) -> Result<Vec<Stored>, StoreError> {
        // The first report with an agent's key is the one written; later ones in the batch
        // repeat it.
        let mut first_with_key: HashMap<(&str, Uuid), usize> = HashMap::with_capacity(runs.len());
        let unique: Vec<&NewRun> = runs
            .iter()
            .enumerate()
            .filter(|(i, run)| {
                let key = (run.agent_name.as_str(), run.run_key);
                *first_with_key.entry(key).or_insert(*i) == *i
            })
            .map(|(_, run)| run)
            .collect();

        // Rows found are told by the first report with their agent's key: its index in `runs`
        // (no key copied per report on the ingest path).
        let first_of = |agent: &str, key: Uuid| first_with_key.get(&(agent, key)).copied();
        let mut created: HashMap<usize, i64> = self
            .write_runs(&unique, held)
            .await?
            .into_iter()
            .filter_map(|(key, agent, id)| Some((first_of(&agent, key)?, id)))
            .collect();

        // Keys that were not inserted belong to runs stored before; the write waited for any
        // concurrent writer of the same key to commit (PostgreSQL: ON CONFLICT; SQLite: the
        // database lock), so this read, after the write committed, sees them.
        let existing_keys: Vec<Uuid> = unique
            .iter()
            .filter(|run| {
                first_of(run.agent_name.as_str(), run.run_key)
                    .is_none_or(|i| !created.contains_key(&i))
            })
            .map(|run| run.run_key)
            .collect();
        let existing: HashMap<usize, StoredReport> = if existing_keys.is_empty() {
            HashMap::new()
        } else {
            self.stored_reports(existing_keys)
                .await?
                .into_iter()
                .filter_map(|(key, stored)| Some((first_of(&stored.agent_name, key)?, stored)))
                .collect()
        };
        // The late result of a run closed as overdue completes it after all (overdue.rs), in
        // report order.
        let mut late: Vec<usize> = existing
            .iter()
            .filter(|(i, stored)| stored.closed_as_overdue(&runs[**i]))
            .map(|(i, _)| *i)
            .collect();
        late.sort_unstable();
        for i in late {
            if let Some(id) = self.complete_overdue(&runs[i]).await? {
                created.insert(i, id);
            }
        }

        runs.iter()
            .enumerate()
            .map(|(i, run)| {
                let first_at = first_of(run.agent_name.as_str(), run.run_key);
                let is_first = first_at == Some(i);
                let first = first_at.map(|i| &runs[i]);
                match (
                    first_at.and_then(|f| created.get(&f)),
                    first_at.and_then(|f| existing.get(&f)),
                ) {
                    (Some(id), _) if is_first => Ok(Stored::Created(*id)),
                    (Some(id), _) if first.is_some_and(|first| first.same_report(run)) => {
                        Ok(Stored::Existing(*id))
                    }
                    (Some(id), _) => Ok(Stored::Conflict(*id)),
                    (None, Some(stored)) if stored.is_report(run) => {
                        Ok(Stored::Existing(stored.id))
                    }
                    (None, Some(stored)) => Ok(Stored::Conflict(stored.id)),
                    (None, None) => Err(StoreError::internal(
                        "storing a batch",
                        format!(
                            "run_key {} was neither inserted nor found after the write committed",
                            run.run_key
                        ),
                    )),
                }
            })
            .collect()
    }
}

/// A stored metric: (name, numeric value as text, text value).
type StoredMetric = (String, Option<String>, Option<String>);

/// A stored run, as a report repeating its key is compared with.
struct StoredReport {
    id: i64,
    agent_name: String,
    status: String,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    error_message: Option<String>,
    /// Sorted by name.
    metrics: Vec<StoredMetric>,
}

impl StoredReport {
    /// Whether this row is `run`'s, closed by the collector as overdue (failed, with no
    /// `finished_at`: every report has one).
    fn closed_as_overdue(&self, run: &NewRun) -> bool {
        self.status == RunStatus::Failed.as_str()
            && self.finished_at.is_none()
            && self.agent_name == run.agent_name.as_str()
    }

    /// Whether `run` is the report this row holds (a running row holds none yet).
    fn is_report(&self, run: &NewRun) -> bool {
        let mut metrics: Vec<(&str, Option<&str>, Option<&str>)> = run
            .metrics
            .iter()
            .map(|m| {
                let (number, text) = metric_columns(m);
                (m.name.as_str(), number, text)
            })
            .collect();
        metrics.sort_unstable();
        self.status != RunStatus::Running.as_str()
            && self.agent_name == run.agent_name.as_str()
            && self.status == run.status.as_str()
            && self.started_at == run.started_at
            && self.finished_at == Some(run.finished_at)
            && self.error_message == run.error_message
            && self.metrics.len() == metrics.len()
            && self
                .metrics
                .iter()
                .zip(&metrics)
                .all(|(a, b)| (a.0.as_str(), a.1.as_deref(), a.2.as_deref()) == *b)
    }
}

impl NewRun {
    /// Whether `other` is the same report (what [`StoredReport::is_report`] compares).
    fn same_report(&self, other: &NewRun) -> bool {
        fn sorted(run: &NewRun) -> Vec<&NewMetric> {
            let mut metrics: Vec<&NewMetric> = run.metrics.iter().collect();
            metrics.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            metrics
        }
        self.agent_name == other.agent_name
            && self.status == other.status
            && self.started_at == other.started_at
            && self.finished_at == other.finished_at
            && self.error_message == other.error_message
            && sorted(self) == sorted(other)
    }
}

impl Store {
    /// The stored runs of `keys` (of every agent), with their metrics: (run_key, run).
    async fn stored_reports(
        &self,
        keys: Vec<Uuid>,
    ) -> Result<Vec<(Uuid, StoredReport)>, StoreError> {
        type RunRow = (
            Uuid,
            i64,
            String,
            String,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Option<String>,
        );
        let select = Query::select()
            .columns([
                AgentRuns::RunKey,
                AgentRuns::Id,
                AgentRuns::AgentName,
                AgentRuns::Status,
                AgentRuns::StartedAt,
                AgentRuns::FinishedAt,
                AgentRuns::ErrorMessage,
            ])
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::RunKey).is_in(keys))
            .take();
        let rows: Vec<RunRow> = self.fetch(&select).await?;
        let ids: Vec<i64> = rows.iter().map(|row| row.1).collect();
        let select = Query::select()
            .column(AgentMetrics::RunId)
            .column(AgentMetrics::MetricName)
            .expr(Expr::col(AgentMetrics::MetricValue).cast_as("text"))
            .column(AgentMetrics::MetricText)
            .from(AgentMetrics::Table)
            .and_where(Expr::col(AgentMetrics::RunId).is_in(ids))
            .take();
        let mut metrics: HashMap<i64, Vec<StoredMetric>> = HashMap::new();
        for (run_id, name, number, text) in self
            .fetch::<(i64, String, Option<String>, Option<String>), _>(&select)
            .await?
        {
            metrics
                .entry(run_id)
                .or_default()
                .push((name, number, text));
        }
        Ok(rows
            .into_iter()
            .map(
                |(key, id, agent_name, status, started_at, finished_at, error_message)| {
                    let mut metrics = metrics.remove(&id).unwrap_or_default();
                    metrics.sort_unstable();
                    let stored = StoredReport {
                        id,
                        agent_name,
                        status,
                        started_at,
                        finished_at,
                        error_message,
                        metrics,
                    };
                    (key, stored)
                },
            )
            .collect())
    }
}

/// A metric's `(metric_value, metric_text)`: one of them is set.
fn metric_columns(metric: &NewMetric) -> (Option<&str>, Option<&str>) {
    match &metric.value {
        StoredValue::Numeric(literal) => (Some(literal.as_str()), None),
        StoredValue::Text(text) => (None, Some(text.as_str())),
    }
}
