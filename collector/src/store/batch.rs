//! Group commit: concurrent reports share one transaction.
//!
//! Handlers queue their validated run and wait for its outcome. A few batcher tasks each take
//! whatever is queued (up to [`MAX_BATCH`]) and store it with one `store_runs` call: when the
//! collector is idle a batch is one run and nothing waits; under load, batches grow while the
//! previous transaction commits, and the per-transaction cost is shared. Each request is
//! answered once its batch has committed.
//!
//! A run the database refuses fails alone, not its batch-mates
//! ([`Store::store_runs_isolated`]).

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Store, Stored};
use crate::domain::NewRun;

/// Most runs in one transaction.
pub const MAX_BATCH: usize = 256;
/// Transactions in flight at once (each batcher holds one connection while it commits).
const BATCHERS: usize = 4;

type Reply = oneshot::Sender<Result<Stored, sqlx::Error>>;

/// The queue in front of the store. Cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<(NewRun, Reply)>,
}

impl Batcher {
    /// Starts the batcher tasks; they end when every `Batcher` clone is dropped.
    pub fn start(store: Store) -> Self {
        let (queue, receiver) = mpsc::channel::<(NewRun, Reply)>(MAX_BATCH * BATCHERS * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..BATCHERS {
            let (store, receiver) = (store.clone(), receiver.clone());
            tokio::spawn(async move {
                while let Some(batch) = next_batch(&receiver).await {
                    commit(&store, batch).await;
                }
            });
        }
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

/// Waits for one queued run, then takes those queued behind it.
async fn next_batch(
    receiver: &Mutex<mpsc::Receiver<(NewRun, Reply)>>,
) -> Option<Vec<(NewRun, Reply)>> {
    let mut receiver = receiver.lock().await;
    let first = receiver.recv().await?;
    let mut batch = Vec::with_capacity(MAX_BATCH.min(receiver.len() + 1));
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
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
