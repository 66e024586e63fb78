//! The write path: runs, their metrics and both daily aggregates in one transaction.
//!
//! Shared by both backends (here): which reports of a batch are written (the first with each
//! `run_key`), the lookup of keys stored before, one outcome per report. Per backend, with the
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
//!
//! Rows are upserted in key order, so concurrent transactions cannot deadlock on them. The
//! collector's tests run on both backends and hold both implementations to the same answers
//! (collector/tests/api/ingest.rs: summaries across days, late reports, duplicates, exact sums).

mod metric_day;
mod postgres;
mod sqlite;
mod start;

pub use start::Started;

use std::collections::HashMap;

use agent_sdk::wire::RunStatus;
use sea_query::{Expr, ExprTrait, Query};
use uuid::Uuid;

use super::schema::AgentRuns;
use super::{Pool, Store, StoreError};
use crate::domain::{NewMetric, NewRun, StoredValue};

/// What happened to one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new run, or a `running` one (`POST /runs`) completed, with its id.
    Created(i64),
    /// Its `run_key` was stored before (or earlier in the same batch): nothing was written.
    Existing(i64),
    /// Its `run_key` belongs to a run still `running` for another agent: nothing was written.
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
    /// A run whose `run_key` is already stored — by an earlier request, a concurrent one, or an
    /// earlier element of `runs` — is not written again, unless that run is `running` (started
    /// by `POST /runs`) for the same agent: the report completes it. Daily summaries count each
    /// run once, when it is written finished.
    pub async fn store_runs(&self, runs: &[NewRun]) -> Result<Vec<Stored>, StoreError> {
        // The first report with a given key is the one written; later ones in the batch repeat it.
        let mut first_with_key: HashMap<Uuid, usize> = HashMap::with_capacity(runs.len());
        let unique: Vec<&NewRun> = runs
            .iter()
            .enumerate()
            .filter(|(i, run)| *first_with_key.entry(run.run_key).or_insert(*i) == *i)
            .map(|(_, run)| run)
            .collect();

        let created: HashMap<Uuid, i64> = match &self.pool {
            Pool::Postgres(pool) => postgres::insert_new(pool, &unique).await?,
            Pool::Sqlite(pool) => sqlite::insert_new(pool, &unique).await?,
        }
        .into_iter()
        .collect();

        // Keys that were not inserted belong to runs stored before; the write waited for any
        // concurrent writer of the same key to commit (PostgreSQL: ON CONFLICT; SQLite: the
        // database lock), so this read, after the write committed, sees them.
        let existing_keys: Vec<Uuid> = unique
            .iter()
            .map(|run| run.run_key)
            .filter(|key| !created.contains_key(key))
            .collect();
        let existing: HashMap<Uuid, (i64, String)> = if existing_keys.is_empty() {
            HashMap::new()
        } else {
            let select = Query::select()
                .columns([AgentRuns::RunKey, AgentRuns::Id, AgentRuns::Status])
                .from(AgentRuns::Table)
                .and_where(Expr::col(AgentRuns::RunKey).is_in(existing_keys))
                .take();
            self.fetch::<(Uuid, i64, String), _>(&select)
                .await?
                .into_iter()
                .map(|(key, id, status)| (key, (id, status)))
                .collect()
        };

        runs.iter()
            .enumerate()
            .map(|(i, run)| {
                let is_first = first_with_key.get(&run.run_key) == Some(&i);
                match (created.get(&run.run_key), existing.get(&run.run_key)) {
                    (Some(id), _) if is_first => Ok(Stored::Created(*id)),
                    (Some(id), _) => Ok(Stored::Existing(*id)),
                    // Still running after the write: another agent's run holds the key.
                    (None, Some((id, status))) if status == RunStatus::Running.as_str() => {
                        Ok(Stored::Conflict(*id))
                    }
                    (None, Some((id, _))) => Ok(Stored::Existing(*id)),
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

/// A metric's `(metric_value, metric_text)`: one of them is set.
fn metric_columns(metric: &NewMetric) -> (Option<&str>, Option<&str>) {
    match &metric.value {
        StoredValue::Numeric(literal) => (Some(literal.as_str()), None),
        StoredValue::Text(text) => (None, Some(text.as_str())),
    }
}
