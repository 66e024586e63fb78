//! Retention: raw runs and metric rows older than the configured ages are deleted in bounded
//! batches, each its own short transaction, so that ingest never waits behind a long delete.
//! Daily summaries and per-metric daily aggregates are kept: they were counted when the rows
//! were stored, and are never recomputed from them.

use chrono::{DateTime, Utc};
use sea_query::{Expr, ExprTrait, Iden, Query, SelectStatement};

use super::tables::{AgentMetrics, AgentRuns};
use super::{Store, StoreError, Tx};
use agent_sdk::wire::RunStatus;

/// Rows one delete takes at most.
pub const PRUNE_BATCH: u64 = 5000;

/// What is kept: rows older than these ages go (`None`: kept forever).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// `RETENTION_METRICS`: metric rows by `recorded_at`.
    pub metrics: Option<std::time::Duration>,
    /// `RETENTION_RUNS`: finished runs by `started_at`, with their metrics.
    pub runs: Option<std::time::Duration>,
}

/// Rows deleted, or that would be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub runs: u64,
    pub metrics: u64,
}

impl Retention {
    pub fn is_keep_all(&self) -> bool {
        self.metrics.is_none() && self.runs.is_none()
    }

    fn cutoffs(&self, now: DateTime<Utc>) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let before = |age: std::time::Duration| {
            chrono::TimeDelta::from_std(age)
                .ok()
                .and_then(|age| now.checked_sub_signed(age))
        };
        (self.runs.and_then(before), self.metrics.and_then(before))
    }
}

impl Store {
    /// Deletes what `retention` no longer keeps at `now`, at most `max_batches` batches of
    /// `batch` rows ([`PRUNE_BATCH`] in the service) per table (the next call takes the rest).
    pub async fn prune(
        &self,
        retention: Retention,
        now: DateTime<Utc>,
        max_batches: usize,
        batch: u64,
    ) -> Result<Pruned, StoreError> {
        let (runs_before, metrics_before) = retention.cutoffs(now);
        let mut pruned = Pruned::default();
        if let Some(before) = runs_before {
            // A run's metrics go with it (ON DELETE CASCADE); running runs stay.
            let old = Query::select()
                .column(AgentRuns::Id)
                .from(AgentRuns::Table)
                .and_where(Expr::col(AgentRuns::StartedAt).lt(before))
                .and_where(Expr::col(AgentRuns::Status).ne(RunStatus::Running.as_str()))
                .to_owned();
            pruned.runs = self
                .delete_in_batches(AgentRuns::Table, AgentRuns::Id, old, max_batches, batch)
                .await?;
        }
        if let Some(before) = metrics_before {
            let old = Query::select()
                .column(AgentMetrics::Id)
                .from(AgentMetrics::Table)
                .and_where(Expr::col(AgentMetrics::RecordedAt).lt(before))
                .to_owned();
            pruned.metrics = self
                .delete_in_batches(
                    AgentMetrics::Table,
                    AgentMetrics::Id,
                    old,
                    max_batches,
                    batch,
                )
                .await?;
        }
        Ok(pruned)
    }

    /// Deletes the rows of `table` whose `id` `old` selects, `batch` at a time, each batch its
    /// own transaction, at most `max_batches` of them: how many went.
    async fn delete_in_batches<T, C>(
        &self,
        table: T,
        id: C,
        old: SelectStatement,
        max_batches: usize,
        batch: u64,
    ) -> Result<u64, StoreError>
    where
        T: Iden + Copy + 'static,
        C: Iden + Copy + 'static,
    {
        let mut deleted = 0;
        for _ in 0..max_batches {
            let delete = Query::delete()
                .from_table(table)
                .and_where(Expr::col(id).in_subquery(old.clone().limit(batch).to_owned()))
                .to_owned();
            let mut tx = Tx::begin(self).await?;
            let went = tx.execute(&delete).await?;
            tx.commit().await?;
            deleted += went;
            if went < batch {
                break;
            }
        }
        Ok(deleted)
    }

    /// What [`Store::prune`] would delete at `now`, counted (metric rows of runs that would go
    /// are counted with the runs' own).
    pub async fn prunable(
        &self,
        retention: Retention,
        now: DateTime<Utc>,
    ) -> Result<Pruned, StoreError> {
        let (runs_before, metrics_before) = retention.cutoffs(now);
        let mut pruned = Pruned::default();
        if let Some(before) = runs_before {
            let count = Query::select()
                .expr(Expr::col(AgentRuns::Id).count())
                .from(AgentRuns::Table)
                .and_where(Expr::col(AgentRuns::StartedAt).lt(before))
                .and_where(Expr::col(AgentRuns::Status).ne(RunStatus::Running.as_str()))
                .to_owned();
            pruned.runs = self
                .fetch::<(i64,), _>(&count)
                .await?
                .pop()
                .map_or(0, |(n,)| n.unsigned_abs());
        }
        if let Some(before) = metrics_before {
            let count = Query::select()
                .expr(Expr::col(AgentMetrics::Id).count())
                .from(AgentMetrics::Table)
                .and_where(Expr::col(AgentMetrics::RecordedAt).lt(before))
                .to_owned();
            pruned.metrics = self
                .fetch::<(i64,), _>(&count)
                .await?
                .pop()
                .map_or(0, |(n,)| n.unsigned_abs());
        }
        Ok(pruned)
    }
}
