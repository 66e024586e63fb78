//! Each job's clock: sleep until the next slot, fire it under the job's concurrency policy
//! (after its jitter); after downtime, the missed slots under its `catchup_window`.
//!
//! A slot is an exact instant of the job's cron expression in its time zone, in whole seconds
//! ([`CronSchedule::next_after`](crate::cron::CronSchedule::next_after)), so every process that
//! computes a job's slots (a restarted one, a second replica) finds the same instants and the
//! same run keys ([`run_key_of`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use agent_sdk::RunContext;
use chrono::{DateTime, TimeDelta, Utc};

use super::run::CancelReason;
use super::{Engine, JobState, lock};
use crate::schedule::{Catchup, ConcurrencyPolicy};

/// Slots looked at when catching up after downtime: a per-second job down for a day has
/// 86 400.
const MAX_MISSED_SLOTS: usize = 100_000;

/// Most slots a catch-up runs (the latest), as a backfill.
const MAX_CATCHUP_SLOTS: usize = agent_sdk::wire::MAX_BACKFILL_SLOTS;

pub use agent_sdk::cron::run_key_of;

impl Engine {
    /// One job's clock: sleep until the next slot, fire, repeat.
    pub(super) async fn clock(&self, state: Arc<JobState>) {
        let job = &state.job;
        let mut after = Utc::now();
        let missed = self.missed_slots(&state, after);
        if let Some(&latest) = missed.back() {
            *lock(&state.last_fire) = Some(latest);
            match job.catchup {
                Catchup::Latest => {
                    tracing::info!(job = %job.name, slot = %latest, missed = missed.len(), "slots were missed while no scheduler ran: running the latest (catchup_window = \"latest\")");
                    self.fire(&state, latest);
                }
                Catchup::Skip => {
                    tracing::info!(job = %job.name, slot = %latest, missed = missed.len(), "slots were missed while no scheduler ran: skipped (catchup_window = \"0s\")");
                }
                Catchup::Window(window) => {
                    let since = after - TimeDelta::from_std(window).unwrap_or(TimeDelta::MAX);
                    let slots: Vec<_> = missed.into_iter().filter(|slot| *slot >= since).collect();
                    tracing::info!(job = %job.name, slots = slots.len(), "slots were missed while no scheduler ran: running those within catchup_window, oldest first");
                    let engine = self.clone();
                    let state = state.clone();
                    self.0
                        .tracker
                        .spawn(async move { engine.catch_up(state, slots).await });
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

    /// The slots between the last recorded fire and now (the latest [`MAX_CATCHUP_SLOTS`],
    /// oldest first): none when nothing was missed or no fire was ever recorded.
    fn missed_slots(&self, state: &JobState, now: DateTime<Utc>) -> VecDeque<DateTime<Utc>> {
        let mut missed = VecDeque::new();
        let Some(last) = *lock(&state.last_fire) else {
            return missed;
        };
        let mut cursor = last;
        for _ in 0..MAX_MISSED_SLOTS {
            match state.job.cron.next_after(cursor) {
                Some(slot) if slot <= now => {
                    if missed.len() == MAX_CATCHUP_SLOTS {
                        missed.pop_front();
                    }
                    missed.push_back(slot);
                    cursor = slot;
                }
                _ => break,
            }
        }
        missed
    }

    /// Runs `slots` of the job one after the other, each under its own key, beside its clock.
    async fn catch_up(&self, state: Arc<JobState>, slots: Vec<DateTime<Utc>>) {
        let job = &state.job;
        for slot in slots {
            if self.0.stop_firing.is_cancelled() {
                return;
            }
            if self.skipped_as_paused(&state, slot) {
                continue;
            }
            let _ = self
                .spawn_run_after(state.clone(), slot_run(&job.name, slot), Duration::ZERO)
                .await;
        }
    }

    /// Starts the run of `slot`, unless the concurrency policy says otherwise.
    fn fire(&self, state: &Arc<JobState>, slot: DateTime<Utc>) {
        let job = &state.job;
        *lock(&state.last_fire) = Some(slot);
        if self.skipped_as_paused(state, slot) {
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
        let delay = jitter_of(&job.name, slot, job.jitter);
        // Not awaited: the clock goes on; the tracker waits for the run at shutdown.
        drop(self.spawn_run_after(state.clone(), slot_run(&job.name, slot), delay));
    }

    /// Whether `slot` is skipped because the job is paused now (counted and logged then).
    fn skipped_as_paused(&self, state: &JobState, slot: DateTime<Utc>) -> bool {
        let job = &state.job;
        if !self.is_paused(&job.name, Utc::now()) {
            return false;
        }
        lock(&state.status).paused_ticks += 1;
        metrics::counter!("scheduler_runs_not_run_total", "job" => job.name.clone(), "reason" => "paused")
            .increment(1);
        tracing::info!(job = %job.name, %slot, "job paused: slot skipped");
        true
    }
}

/// The run of `job`'s `slot`: scheduled, under the slot's key.
fn slot_run(job: &str, slot: DateTime<Utc>) -> RunContext {
    RunContext::new(job)
        .scheduled(slot)
        .with_run_key(run_key_of(job, slot))
}

/// How long after `slot` the job's run starts, within `jitter`: derived from the slot's run
/// key, so every replica waits the same.
pub fn jitter_of(job: &str, slot: DateTime<Utc>, jitter: Duration) -> Duration {
    let bound = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
    if bound == 0 {
        return Duration::ZERO;
    }
    let key = run_key_of(job, slot);
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&key.as_bytes()[8..]);
    Duration::from_millis(u64::from_be_bytes(bytes) % bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slots_jitter_is_the_same_everywhere_and_within_its_bound() {
        let bound = Duration::from_secs(30);
        let slot: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let delays: Vec<Duration> = (0..200)
            .map(|hour| jitter_of("llm_digest", slot + TimeDelta::hours(hour), bound))
            .collect();
        // What every replica computes for a slot: a function of the job and the slot alone.
        for (hour, delay) in delays.iter().enumerate() {
            let again = jitter_of("llm_digest", slot + TimeDelta::hours(hour as i64), bound);
            assert_eq!(again, *delay);
            assert!(*delay < bound, "{delay:?}");
        }
        // Spread over the bound, not bunched: both halves are used, and jobs differ.
        assert!(delays.iter().any(|d| *d < bound / 2) && delays.iter().any(|d| *d >= bound / 2));
        let others: Vec<Duration> = (0..200)
            .map(|hour| jitter_of("other_job", slot + TimeDelta::hours(hour), bound))
            .collect();
        assert_ne!(delays, others);
        assert_eq!(
            jitter_of("llm_digest", slot, Duration::ZERO),
            Duration::ZERO
        );
    }
}
