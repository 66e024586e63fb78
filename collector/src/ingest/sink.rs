//! Where runs go: the store, then the counts and the announcements; a run the database refuses
//! fails alone.

use tokio::sync::broadcast;

use super::StoredRun;
use crate::domain::NewRun;
use crate::store::{HeldConnection, Store, StoreError, Stored};

/// Where runs go: the store, then the counts and the announcements.
#[derive(Clone)]
pub(super) struct Sink {
    pub(super) store: Store,
    /// Every run stored, for whoever subscribed (the `platform` command prints them). A slow
    /// subscriber misses announcements (it is told how many), never slows ingest.
    pub(super) stored_runs: broadcast::Sender<StoredRun>,
}

impl Sink {
    /// Stores `runs` in one transaction, one outcome per run; when that transaction fails for any
    /// reason but the database being unavailable, each run is retried in a transaction of its own,
    /// so a run the database refuses fails alone, not its batch-mates.
    /// On `held`'s connection where given (an ingest writer's), else on one from the pool.
    pub(super) async fn store_isolated(
        &self,
        runs: &[NewRun],
        mut held: Option<&mut HeldConnection>,
    ) -> Vec<Result<Stored, StoreError>> {
        let outcomes = match self.store.store_runs_with(runs, held.as_deref_mut()).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(err) if runs.len() == 1 || err.is_unavailable() => {
                if runs.len() > 1 {
                    tracing::warn!(error = %err, runs = runs.len(), "database unavailable: batch refused");
                }
                vec![Err(err); runs.len()]
            }
            Err(err) => {
                tracing::warn!(error = %err, runs = runs.len(), "batch failed: storing its runs one by one");
                let mut outcomes = Vec::with_capacity(runs.len());
                for run in runs {
                    outcomes.push(
                        self.store
                            .store_runs_with(std::slice::from_ref(run), held.as_deref_mut())
                            .await
                            .and_then(|mut stored| {
                                stored.pop().ok_or_else(|| {
                                    StoreError::internal(
                                        "storing one run",
                                        "the store returned no outcome",
                                    )
                                })
                            }),
                    );
                }
                outcomes
            }
        };
        // One subscriber check per batch: nothing is built when nobody listens.
        let announce = self.stored_runs.receiver_count() > 0;
        for (run, outcome) in runs.iter().zip(&outcomes) {
            if let Ok(stored) = outcome {
                self.count(run, *stored, announce);
            }
        }
        outcomes
    }

    /// Counts a stored run in `/prometheus`, and announces it if it is new and `announce`.
    fn count(&self, run: &NewRun, stored: Stored, announce: bool) {
        match stored {
            Stored::Created(run_id) => {
                metrics::counter!("collector_runs_stored_total", "status" => run.status.as_str())
                    .increment(1);
                metrics::counter!("collector_metrics_stored_total")
                    .increment(run.metrics.len() as u64);
                if announce {
                    // No subscriber left is not an error.
                    let _ = self.stored_runs.send(StoredRun {
                        run_id,
                        agent_name: run.agent_name.as_str().to_owned(),
                        status: run.status,
                        duration_ms: run.duration_ms(),
                        metric_count: run.metrics.len(),
                    });
                }
            }
            Stored::Conflict(run_id) => {
                metrics::counter!("collector_runs_conflict_total").increment(1);
                tracing::warn!(
                    run_id,
                    agent = run.agent_name.as_str(),
                    "run_key holds another report of the agent: refused"
                );
            }
            Stored::Existing(run_id) => {
                metrics::counter!("collector_runs_duplicate_total").increment(1);
                tracing::info!(
                    run_id,
                    agent = run.agent_name.as_str(),
                    "run_key seen before: nothing written"
                );
            }
        }
    }
}
