//! The way in for runs: every endpoint that stores or starts runs goes through [`Ingest`]. Other
//! writes (expectations, from the API and `collector expect`; the watcher's incidents; retention)
//! are one store call each, with nothing to add between the caller and the store.
//!
//! It owns what happens between a validated run and the store: group commit on per-agent
//! writers for single reports ([`writers`]), one transaction for a batch request, the isolation
//! of a run the database refuses, the counts in `/prometheus`, and the announcement of each run
//! stored to whoever subscribed. It is started by the application's start-up
//! ([`crate::startup::Application::bind`]), beside the HTTP server, and stops after it.

mod sink;
mod writers;

use agent_sdk::wire::RunStatus;
use tokio::sync::broadcast;

use crate::domain::{NewRun, NewStart};
use crate::store::{Started, Store, StoreError, Stored};
use sink::Sink;
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

impl Ingest {
    /// Starts `writers` writer tasks on `store` (at least one; SQLite has one, it runs one
    /// write transaction at a time).
    pub fn start(store: Store, writers: usize) -> Self {
        let writers = store.backend().writers(writers.max(1));
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
