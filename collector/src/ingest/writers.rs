//! Group commit: concurrent reports share one transaction.
//!
//! Handlers queue their validated run and wait for its outcome. A writer task takes whatever
//! is queued (up to [`MAX_BATCH`]) and stores it in one transaction: when the collector is idle
//! a batch is one run and nothing waits; under load, the next batch grows while the current
//! transaction commits, and the per-transaction cost is shared. Each request is answered once
//! its batch has committed.
//!
//! On PostgreSQL each writer keeps its connection across batches ([`HeldConnection`]).
//!
//! Several writers (`DATABASE_WRITERS`), each with its own queue, and an agent's reports always
//! go to the same one: batches on different writers never upsert the same summary row (one per
//! agent and day), so they never wait on each other's row locks, while PostgreSQL runs their
//! inserts on several cores. One writer leaves PostgreSQL's other cores idle
//! (docs/performance.md); an agent's runs are still stored one batch at a time, in the order
//! they came.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::sink::Sink;
use crate::domain::NewRun;
use crate::store::{HeldConnection, StoreError, Stored};

/// Most runs in one transaction.
pub const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Stored, StoreError>>;

/// A queued run, its reply, and when it was queued.
type Queued = (NewRun, Reply, Instant);

/// The queues in front of the store, one per writer. Cheap to clone.
#[derive(Clone)]
pub(super) struct Writers {
    queues: Arc<[mpsc::Sender<Queued>]>,
    tasks: TaskTracker,
}

impl Writers {
    /// Starts `count` (at least one, [`super::Ingest::start`] sees to it) writer tasks storing
    /// into `sink`; they end when every clone is dropped.
    pub(super) fn start(count: usize, sink: &Sink) -> Self {
        let tasks = TaskTracker::new();
        let queues = (0..count)
            .map(|index| {
                let (queue, mut receiver) = mpsc::channel::<Queued>(MAX_BATCH * 4);
                let sink = sink.clone();
                tasks.spawn(async move {
                    let mut batch = Vec::with_capacity(MAX_BATCH);
                    let mut held = HeldConnection::default();
                    // Its label on the batch metrics.
                    let writer = index.to_string();
                    // Waits for one queued run, then takes those queued behind it.
                    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
                        commit(&sink, std::mem::take(&mut batch), &writer, &mut held).await;
                    }
                });
                queue
            })
            .collect();
        tasks.close();
        Self { queues, tasks }
    }

    pub(super) fn count(&self) -> usize {
        self.queues.len()
    }

    /// Stores `run` in the next batch of its agent's writer and returns its outcome.
    pub(super) async fn store(&self, run: NewRun) -> Result<Stored, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let stopped = || StoreError::internal("queueing a run", "the ingest writers have stopped");
        self.queues[writer_of(run.agent_name.as_str(), self.queues.len())]
            .send((run, reply, Instant::now()))
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// Drops this handle's queues and waits for the writer tasks to end (they end once every
    /// handle is gone and their queues are drained).
    pub(super) async fn stopped(self) {
        let Self { queues, tasks } = self;
        drop(queues);
        tasks.wait().await;
    }
}

/// Which of `writers` stores `agent`'s reports: always the same one in a process.
fn writer_of(agent: &str, writers: usize) -> usize {
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(agent);
    // The remainder is below `writers`, a usize.
    (hash % writers as u64) as usize
}

async fn commit(sink: &Sink, batch: Vec<Queued>, writer: &str, held: &mut HeldConnection) {
    // Looked up per batch, not kept: a handle taken before the recorder is installed (the
    // writers start first) would record nowhere.
    let label = || ("writer", writer.to_owned());
    let started = Instant::now();
    let queued = metrics::histogram!("collector_ingest_queue_seconds", &[label()]);
    let (runs, replies): (Vec<NewRun>, Vec<Reply>) = batch
        .into_iter()
        .map(|(run, reply, at)| {
            queued.record(started.duration_since(at).as_secs_f64());
            (run, reply)
        })
        .unzip();
    metrics::histogram!("collector_batch_size", &[label()]).record(runs.len() as f64);
    let storing = Instant::now();
    let outcomes = sink.store_isolated(&runs, Some(held)).await;
    metrics::histogram!("collector_batch_seconds", &[label()])
        .record(storing.elapsed().as_secs_f64());
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // The client may have gone; its run is stored all the same.
        let _ = reply.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::writer_of;

    #[test]
    fn an_agent_always_has_the_same_writer_and_agents_spread_over_all() {
        let agents: Vec<String> = (0..20).map(|i| format!("bench_agent_{i:02}")).collect();
        for writers in 1..=4 {
            let chosen: Vec<usize> = agents.iter().map(|a| writer_of(a, writers)).collect();
            assert!(chosen.iter().all(|&w| w < writers));
            let again: Vec<usize> = agents.iter().map(|a| writer_of(a, writers)).collect();
            assert_eq!(chosen, again);
            for w in 0..writers {
                assert!(
                    chosen.contains(&w),
                    "writer {w} of {writers} gets none of 20 agents"
                );
            }
        }
        // The integration test racing one run_key under these names needs several writers.
        let racers: std::collections::HashSet<usize> = (0..10)
            .map(|i| writer_of(&format!("racer_{i}"), crate::ingest::DEFAULT_WRITERS))
            .collect();
        assert!(racers.len() > 1, "{racers:?}");
    }
}
