//! Each job's clock: sleep until the next slot, fire it under the job's concurrency policy;
//! after downtime, the missed slots under its misfire policy.
//!
//! A slot is an exact instant of the job's cron expression in its time zone, in whole seconds
//! ([`CronSchedule::next_after`](crate::cron::CronSchedule::next_after)), so every process that
//! computes a job's slots (a restarted one, a second replica) finds the same instants and the
//! same run keys ([`run_key_of`]).

use std::sync::Arc;

use agent_sdk::RunContext;
use chrono::{DateTime, Utc};

use super::run::CancelReason;
use super::{Engine, JobState, lock};
use crate::schedule::{ConcurrencyPolicy, MisfirePolicy};

/// Slots looked at when catching up after downtime: a per-second job down for a day has
/// 86 400; only the latest matters.
const MAX_MISSED_SLOTS: usize = 100_000;

pub use agent_sdk::cron::run_key_of;

impl Engine {
    /// One job's clock: sleep until the next slot, fire, repeat.
    pub(super) async fn clock(&self, state: Arc<JobState>) {
        let job = &state.job;
        let mut after = Utc::now();
        if let Some(missed) = self.missed_slot(&state, after) {
            match job.misfire {
                MisfirePolicy::RunOnce => {
                    tracing::info!(job = %job.name, slot = %missed, "ticks were missed while the scheduler was down: running once");
                    self.fire(&state, missed);
                }
                MisfirePolicy::Skip => {
                    tracing::info!(job = %job.name, slot = %missed, "ticks were missed while the scheduler was down: skipped (misfire_policy = skip)");
                    *lock(&state.last_fire) = Some(missed);
                }
            }
        }
        loop {
            let Some(next) = job.cron.next_after(after) else {
                tracing::warn!(job = %job.name, "the schedule has no future fire time");
                break;
            };
            lock(&state.status).next_fire = Some(next);
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.0.stop_firing.cancelled() => break,
            }
            let lateness = (Utc::now() - next).as_seconds_f64().max(0.0);
            metrics::histogram!("scheduler_fire_lateness_seconds").record(lateness);
            self.fire(&state, next);
            after = next;
        }
    }

    /// The latest slot between the last recorded fire and now, if any was missed.
    fn missed_slot(&self, state: &JobState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let last = (*lock(&state.last_fire))?;
        let mut missed = None;
        let mut cursor = last;
        for _ in 0..MAX_MISSED_SLOTS {
            match state.job.cron.next_after(cursor) {
                Some(slot) if slot <= now => {
                    missed = Some(slot);
                    cursor = slot;
                }
                _ => break,
            }
        }
        missed
    }

    /// Starts the run of `slot`, unless the concurrency policy says otherwise.
    fn fire(&self, state: &Arc<JobState>, slot: DateTime<Utc>) {
        let job = &state.job;
        *lock(&state.last_fire) = Some(slot);
        if self.is_paused(&job.name, Utc::now()) {
            lock(&state.status).paused_ticks += 1;
            metrics::counter!("scheduler_runs_not_run_total", "job" => job.name.clone(), "reason" => "paused")
                .increment(1);
            tracing::info!(job = %job.name, %slot, "job paused: slot skipped");
            return;
        }
        match job.concurrency {
            ConcurrencyPolicy::Forbid if !lock(&state.running).is_empty() => {
                lock(&state.status).skipped_ticks += 1;
                metrics::counter!("scheduler_skipped_ticks_total", "job" => job.name.clone())
                    .increment(1);
                tracing::warn!(job = %job.name, %slot, "previous run still going: tick skipped (concurrency_policy = forbid)");
                return;
            }
            ConcurrencyPolicy::Replace => {
                for (token, reason) in lock(&state.running).values_mut() {
                    *reason = Some(CancelReason::Replaced);
                    token.cancel();
                }
            }
            ConcurrencyPolicy::Forbid | ConcurrencyPolicy::Allow => {}
        }
        self.spawn_run(
            state.clone(),
            RunContext::new(&job.name)
                .scheduled(slot)
                .with_run_key(run_key_of(&job.name, slot)),
        );
    }
}
