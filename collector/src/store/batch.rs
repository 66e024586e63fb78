//! Group commit: concurrent reports share one transaction.
//!
//! Handlers queue their validated run and wait for its outcome. One writer task takes whatever
//! is queued (up to [`MAX_BATCH`]) and stores it with one `store_runs` call: when the collector
//! is idle a batch is one run and nothing waits; under load, the next batch grows while the
//! current transaction commits, and the per-transaction cost is shared. Each request is
//! answered once its batch has committed.
//!
//! One writer, not several: concurrent batches would upsert the same summary rows (one per
//! agent and day) and wait on each other's commits. At 64 connections, two or three writers
//! (agents split between them or not) measured within the noise of one while using more
//! PostgreSQL CPU (docs/performance.md).
//!
//! A run the database refuses fails alone, not its batch-mates
//! ([`Store::store_runs_isolated`]).

use tokio::sync::{mpsc, oneshot};

use super::{Store, Stored};
use crate::domain::NewRun;

/// Most runs in one transaction.
pub const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Stored, sqlx::Error>>;

/// The queue in front of the store. Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<(NewRun, Reply)>,
}

impl Batcher {
    /// Starts the writer task; it ends when every `Batcher` clone is dropped.
    pub fn start(store: Store) -> Self {
        let (queue, mut receiver) = mpsc::channel::<(NewRun, Reply)>(MAX_BATCH * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            // Waits for one queued run, then takes those queued behind it.
            while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
                commit(&store, std::mem::take(&mut batch)).await;
            }
        });
        Self { queue }
    }

    /// Stores `run` in the next batch and returns its outcome.
    pub async fn store(&self, run: NewRun) -> Result<Stored, sqlx::Error> {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send((run, reply))
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        outcome.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

async fn commit(store: &Store, batch: Vec<(NewRun, Reply)>) {
    let (runs, replies): (Vec<NewRun>, Vec<Reply>) = batch.into_iter().unzip();
    metrics::histogram!("collector_batch_size").record(runs.len() as f64);
    let outcomes = store.store_runs_isolated(&runs).await;
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // The client may have gone; its run is stored all the same.
        let _ = reply.send(outcome);
    }
}
