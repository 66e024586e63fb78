//! When a connection sends: closed loop, or open loop at the instants of a clock thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};

/// When a connection sends: as soon as its last answer is in (closed loop), or at the instants
/// the clock thread hands it (open loop).
pub(crate) enum Pace {
    Closed,
    Open(Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>),
}

impl Pace {
    /// The instant the next request is due from, or `None` when the run is over.
    pub(crate) async fn next(&mut self, deadline: Instant) -> Option<Instant> {
        match self {
            Self::Closed => Some(Instant::now()).filter(|now| *now < deadline),
            // The idle connections queue for the lock in turn (tokio's Mutex is fair): the one
            // holding it takes the next due instant.
            Self::Open(due) => due.lock().await.recv().await,
        }
    }
}

/// The open loop's clock: queues the `index`-th request of all, due at `index / rate` after
/// `started`, for whichever connection is idle first, on time to within the thread's wake-up
/// (nanosleep), until `deadline`. Returns how late it queued each one, in microseconds.
pub(crate) fn clock(
    queue: &mpsc::UnboundedSender<Instant>,
    rate: f64,
    started: Instant,
    deadline: Instant,
) -> Vec<u32> {
    let mut late = Vec::new();
    for index in 0u64.. {
        let due = started + Duration::from_secs_f64(index as f64 / rate);
        if due >= deadline {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        late.push(u32::try_from(due.elapsed().as_micros()).unwrap_or(u32::MAX));
        // Only fails once every connection has given up (their tasks failed): main reports it.
        let _ = queue.send(due);
    }
    late
}
