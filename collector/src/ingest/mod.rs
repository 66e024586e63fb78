//! The one way in for writes: every endpoint that stores or starts runs goes through [`Ingest`].
//!
//! It owns what happens between a validated run and the store: group commit on per-agent
//! writers for single reports ([`writers`]), one transaction for a batch request, the isolation
//! of a run the database refuses, the counts in `/prometheus`, and the announcement of each run
//! stored to whoever subscribed. It is started by the application's start-up
//! ([`crate::startup::Application::bind`]), beside the HTTP server, and stops after it.

mod writers;

use agent_sdk::wire::{Expectation, RunStatus};
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::domain::{AgentName, NewExpectation, NewRun, NewStart};
use crate::store::{Backend, HeldConnection, Started, Store, StoreError, Stored};
use writers::Writers;

pub use writers::MAX_BATCH;

/// Write transactions in parallel on PostgreSQL unless `DATABASE_WRITERS` says otherwise. On
/// two cores two beat both one and three (docs/performance.md): one leaves a core idle while
/// its commit waits for the disk (three took 36% more reports/s than one), and three add a
/// backend competing for the cores without adding any (two took 5% more reports/s than three
/// with 64 connections, and a lower p99; open loop, the two were within the spread).
pub const DEFAULT_WRITERS: usize = 2;

/// A run just stored (not one seen before).
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub run_id: i64,
    pub agent_name: String,
    pub status: RunStatus,
    pub duration_ms: i64,
    pub metric_count: usize,
}

/// The ingest service. Cheap to clone; the writers stop once every clone is gone.
#[derive(Clone)]
pub struct Ingest {
    sink: Sink,
    writers: Writers,
}

/// Where runs go: the store, then the counts and the announcements.
#[derive(Clone)]
struct Sink {
    store: Store,
    /// Every run stored, for whoever subscribed (the `platform` command prints them). A slow
    /// subscriber misses announcements (it is told how many), never slows ingest.
    stored_runs: broadcast::Sender<StoredRun>,
}

impl Ingest {
    /// Starts `writers` writer tasks on `store` (at least one; SQLite has one, it runs one
    /// write transaction at a time).
    pub fn start(store: Store, writers: usize) -> Self {
        let writers = match store.backend() {
            Backend::Postgres => writers.max(1),
            Backend::Sqlite => 1,
        };
        let sink = Sink {
            store,
            stored_runs: broadcast::channel(1024).0,
        };
        tracing::debug!(writers, "ingest writers started");
        Self {
            writers: Writers::start(writers, &sink),
            sink,
        }
    }

    /// How many write transactions may run at once.
    pub fn writers(&self) -> usize {
        self.writers.count()
    }

    /// Stores one run in the next batch of its agent's writer (group commit).
    pub async fn store_one(&self, run: NewRun) -> Result<Stored, StoreError> {
        self.writers.store(run).await
    }

    /// Stores `runs` in one transaction of their own, one outcome per run: a run the database
    /// refuses fails alone. `Err` when the database is unavailable: then nothing was stored.
    pub async fn store_batch(
        &self,
        runs: &[NewRun],
    ) -> Result<Vec<Result<Stored, StoreError>>, StoreError> {
        let outcomes = self.sink.store_isolated(runs, None).await;
        match outcomes
            .iter()
            .find_map(|o| o.as_ref().err().filter(|e| e.is_unavailable()))
        {
            Some(unavailable) => Err(unavailable.clone()),
            None => Ok(outcomes),
        }
    }

    /// Starts a run (`POST /runs`): a `running` row, unless another claimant holds its key.
    /// Not batched: a start is one small insert, and its caller waits on it to run the agent.
    pub async fn start_run(&self, start: &NewStart) -> Result<Started, StoreError> {
        let started = self.sink.store.start_run(start).await?;
        let outcome = match &started {
            Started::Created(_) => "created",
            Started::Again(_) => "again",
            Started::Claimed(_) => "claimed",
        };
        metrics::counter!("collector_run_starts_total", "outcome" => outcome).increment(1);
        Ok(started)
    }

    /// Stores an agent's expectation: `true` when it is new.
    pub async fn put_expectation(
        &self,
        expectation: &NewExpectation,
        now: DateTime<Utc>,
    ) -> Result<(Expectation, bool), StoreError> {
        self.sink.store.put_expectation(expectation, now).await
    }

    /// Replaces the expectations schedulers published with `jobs`.
    pub async fn sync_scheduled(
        &self,
        jobs: &[(NewExpectation, Option<i64>)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Expectation>, StoreError> {
        self.sink.store.sync_scheduled(jobs, now).await
    }

    /// Removes an agent's expectation: `false` when there was none.
    pub async fn delete_expectation(&self, agent: &AgentName) -> Result<bool, StoreError> {
        self.sink.store.delete_expectation(agent).await
    }

    /// Every run stored from now on, as its transaction commits.
    pub fn subscribe(&self) -> broadcast::Receiver<StoredRun> {
        self.sink.stored_runs.subscribe()
    }

    /// Waits until the writers have stored what was queued and stopped: call it after the HTTP
    /// server has stopped and with every other clone dropped.
    pub async fn stopped(self) {
        self.writers.stopped().await;
    }
}

impl Sink {
    /// Stores `runs` in one transaction, one outcome per run; when that transaction fails for any
    /// reason but the database being unavailable, each run is retried in a transaction of its own,
    /// so a run the database refuses fails alone, not its batch-mates.
    /// On `held`'s connection where given (an ingest writer's), else on one from the pool.
    async fn store_isolated(
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
                    "run_key held by another agent's running run: refused"
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
