//! Retention: raw runs and metric rows older than the configured ages are deleted in batches
//! bounded by the rows they delete (a run's metric rows go with it, and count), each its own
//! short transaction, one replica at a time, so that ingest never waits behind a long delete.
//! Daily summaries and per-metric daily aggregates are kept: they were counted when the rows
//! were stored, and are never recomputed from them.

use chrono::{DateTime, Utc};
use sea_query::{Expr, ExprTrait, Iden, Order, Query, SelectStatement};

use super::tables::{AgentMetrics, AgentRuns};
use super::{Store, StoreError, Tx};
use agent_sdk::wire::RunStatus;

/// Rows one delete takes at most: metric rows, or runs and the metric rows that go with them
/// (a run alone over it goes alone).
pub const PRUNE_BATCH: u64 = 5000;

/// The advisory lock each batch's transaction takes: one replica prunes at a time, the others
/// skip their turn ("prune" in ASCII).
pub const PRUNE_LOCK: i64 = 0x0000_0070_7275_6e65;

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
    /// The longest batch's transaction, begun to committed (zero for a count).
    pub slowest_batch: std::time::Duration,
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
            for _ in 0..max_batches {
                let started = std::time::Instant::now();
                let Some(went) = self.prune_runs(before, batch).await? else {
                    break;
                };
                pruned.slowest_batch = pruned.slowest_batch.max(started.elapsed());
                pruned.runs += went;
                if went == 0 {
                    break;
                }
            }
        }
        if let Some(before) = metrics_before {
            let old = Query::select()
                .column(AgentMetrics::Id)
                .from(AgentMetrics::Table)
                .and_where(Expr::col(AgentMetrics::RecordedAt).lt(before))
                .to_owned();
            let (went, slowest) = self
                .delete_in_batches(
                    AgentMetrics::Table,
                    AgentMetrics::Id,
                    old,
                    max_batches,
                    batch,
                )
                .await?;
            pruned.metrics = went;
            pruned.slowest_batch = pruned.slowest_batch.max(slowest);
        }
        Ok(pruned)
    }

    /// One batch of finished runs started before `before`, the oldest first, with their metric
    /// rows: as many runs as keep runs and metric rows within `batch` (at least one), in one
    /// transaction: how many runs went. `None` while another replica prunes.
    async fn prune_runs(
        &self,
        before: DateTime<Utc>,
        batch: u64,
    ) -> Result<Option<u64>, StoreError> {
        let candidates = Query::select()
            .columns([AgentRuns::Id, AgentRuns::MetricCount])
            .from(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::StartedAt).lt(before))
            .and_where(Expr::col(AgentRuns::Status).ne(RunStatus::Running.as_str()))
            .order_by(AgentRuns::StartedAt, Order::Asc)
            .limit(batch)
            .to_owned();
        let mut tx = Tx::begin(self).await?;
        if !tx.try_lock(PRUNE_LOCK).await? {
            return Ok(None);
        }
        let runs: Vec<(i64, i32)> = tx.fetch(&candidates).await?;
        let (mut ids, mut rows) = (Vec::new(), 0u64);
        for (id, metric_count) in runs {
            let with_metrics = 1 + u64::try_from(metric_count).unwrap_or(0);
            if !ids.is_empty() && rows + with_metrics > batch {
                break;
            }
            ids.push(id);
            rows += with_metrics;
        }
        if ids.is_empty() {
            return Ok(Some(0));
        }
        let delete = Query::delete()
            .from_table(AgentRuns::Table)
            .and_where(Expr::col(AgentRuns::Id).is_in(ids))
            .to_owned();
        let went = tx.execute(&delete).await?;
        tx.commit().await?;
        Ok(Some(went))
    }

    /// Deletes the rows of `table` whose `id` `old` selects, `batch` at a time, each batch its
    /// own transaction (while no other replica prunes), at most `max_batches` of them: how
    /// many went, and the longest batch.
    async fn delete_in_batches<T, C>(
        &self,
        table: T,
        id: C,
        old: SelectStatement,
        max_batches: usize,
        batch: u64,
    ) -> Result<(u64, std::time::Duration), StoreError>
    where
        T: Iden + Copy + 'static,
        C: Iden + Copy + 'static,
    {
        let (mut deleted, mut slowest) = (0, std::time::Duration::ZERO);
        for _ in 0..max_batches {
            let started = std::time::Instant::now();
            let delete = Query::delete()
                .from_table(table)
                .and_where(Expr::col(id).in_subquery(old.clone().limit(batch).to_owned()))
                .to_owned();
            let mut tx = Tx::begin(self).await?;
            if !tx.try_lock(PRUNE_LOCK).await? {
                break;
            }
            let went = tx.execute(&delete).await?;
            tx.commit().await?;
            slowest = slowest.max(started.elapsed());
            deleted += went;
            if went < batch {
                break;
            }
        }
        Ok((deleted, slowest))
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
