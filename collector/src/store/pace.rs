//! The pace of background work (the watcher's pass, the closing of overdue runs) in its
//! transaction on PostgreSQL: after each statement it rests [`BACKGROUND_REST`] times as long as
//! the statement took, so that it takes a bounded share of the cores from ingest however often
//! it runs, as autovacuum's cost delay does for its own work (docs/performance.md: with passes
//! back to back, unpaced, ingest kept 0.81-0.87 of its rate). The only rows such a transaction
//! holds through a rest that ingest may write are the overdue runs being closed (a late report
//! for one of them waits). SQLite is not paced: its one write lock would be held through the rest.

use std::time::{Duration, Instant};

/// A paced transaction's rest after each statement, as a multiple of the statement's time:
/// it works a quarter of the time.
const BACKGROUND_REST: f64 = 3.0;

/// The longest rest after one statement: a statement slowed by a stall elsewhere does not
/// hold the transaction open for long after it.
const MAX_REST: Duration = Duration::from_millis(200);

/// The most rest in one transaction: a rare heavy pass (the first after many agents changed)
/// stays under a second, working more than its share for the rest of it.
const MAX_RESTED: Duration = Duration::from_millis(500);

/// The shortest rest taken after a statement: shorter ones are added up first (the timer
/// counts in milliseconds).
pub(super) const MIN_REST: Duration = Duration::from_millis(5);

/// A paced transaction's rests: owed after each statement, taken once they add up.
#[derive(Default)]
pub(super) struct Pace {
    /// Rest owed and not taken yet.
    owed: Duration,
    /// Rest taken so far: at most [`MAX_RESTED`].
    rested: Duration,
}

impl Pace {
    /// Owes the rest of a statement that started at `started`, and takes what is owed if it
    /// is at least `least`; the time a sleep overran counts as rest taken.
    pub(super) async fn after(&mut self, started: Instant, least: Duration) {
        if self.rested >= MAX_RESTED {
            return;
        }
        self.owed += started.elapsed().mul_f64(BACKGROUND_REST).min(MAX_REST);
        if self.owed >= least {
            let resting = Instant::now();
            tokio::time::sleep(self.owed.min(MAX_RESTED - self.rested)).await;
            let slept = resting.elapsed();
            self.rested += slept;
            self.owed = self.owed.saturating_sub(slept);
        }
    }
}
