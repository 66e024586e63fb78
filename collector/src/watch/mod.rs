//! Monitoring: the rules (`rules/`, pure), the watcher's pass that applies them to the rows
//! (`pass/`), the alerts that carry its incidents out (`alerts/`), and the background loop
//! that runs them beside the HTTP server: overdue runs closed, a pass, alerts sent, old rows
//! pruned, every `WATCH_EVERY`.

pub mod alerts;
mod pass;
pub mod rules;

pub use alerts::Alerts;
pub use pass::{SLOTS_PER_PASS_IN_ALL, WATCH_LOCK, Watched, Watcher};
pub use rules::WatchRules;

use std::time::Instant;

use crate::store::{PRUNE_BATCH, Pruned, Retention};

/// Batches of old rows one pass deletes at most per table (the next pass takes the rest).
const PRUNE_BATCHES_PER_PASS: usize = 20;

/// Every `rules.every` (`WATCH_EVERY`): closes runs `running` past their deadline as failed
/// (`Store::close_overdue`), runs the watcher's pass, routes the alerts of the incidents it
/// opened or resolved and wakes their routes' senders (tasks of their own: no HTTP here), and
/// deletes what retention no longer keeps; on PostgreSQL each one replica at a time. Runs
/// until dropped (its senders with it).
pub async fn run(watcher: Watcher, alerts: Option<Alerts>, retention: Retention) {
    let store = watcher.store().clone();
    let senders = alerts
        .as_ref()
        .map(|alerts| alerts.spawn(&store, watcher.rules().every));
    let mut ticks = tokio::time::interval(watcher.rules().every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.close_overdue(chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(closed) => {
                metrics::counter!("collector_runs_overdue_total").increment(closed as u64);
                tracing::warn!(
                    closed,
                    "runs past their deadline without a result: closed as failed"
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, "closing overdue runs failed; retrying at the next pass")
            }
        }
        let started = Instant::now();
        match watcher.pass(chrono::Utc::now()).await {
            Ok(None) => {}
            Ok(Some(Watched {
                missed, late, more, ..
            })) => {
                // Catching up (a pass stopped at its most slots): the next pass after a pause
                // as long as this one, not after WATCH_EVERY. The pause leaves the database to
                // ingest in between (SQLite's one write lock above all).
                let took = started.elapsed();
                if more {
                    ticks.reset_after(took);
                }
                metrics::histogram!("collector_watch_pass_seconds").record(took.as_secs_f64());
                metrics::counter!("collector_missed_slots_total").increment(missed as u64);
                metrics::counter!("collector_late_slots_total").increment(late as u64);
                if missed > 0 {
                    tracing::warn!(missed, "expected slots missed");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "the watcher's pass failed; retrying at the next pass")
            }
        }
        if let (Some(alerts), Some(senders)) = (&alerts, &senders) {
            match alerts.route_events(&store, chrono::Utc::now()).await {
                Ok(()) => senders.wake(),
                Err(err) => {
                    tracing::warn!(error = %err, "routing alerts failed; retrying at the next pass")
                }
            }
        }
        if !retention.is_keep_all() {
            let now = chrono::Utc::now();
            match store
                .prune(retention, now, PRUNE_BATCHES_PER_PASS, PRUNE_BATCH)
                .await
            {
                Ok(Pruned {
                    runs: 0,
                    metrics: 0,
                    ..
                }) => {}
                Ok(pruned) => tracing::info!(
                    runs = pruned.runs,
                    metrics = pruned.metrics,
                    slowest_batch_ms = pruned.slowest_batch.as_millis() as u64,
                    "retention: old rows deleted"
                ),
                Err(err) => {
                    tracing::warn!(error = %err, "retention: deleting old rows failed; retrying at the next pass")
                }
            }
        }
    }
}
