//! What operators ask of the jobs through the collector (`POST /jobs/{job}/pause`, `/runs`,
//! `POST /runs/{id}/cancel`), fetched by every replica each [`POLL_EVERY`]
//! (`GET /scheduler/commands`): the collector is the one place they meet, as for claims, so no
//! replica needs to know another. A command takes at most a poll and its answer to arrive: under
//! 2 s with a healthy collector.
//!
//! - A paused job's clock keeps ticking but fires nothing ([`Engine::fire`] skips the slot); a
//!   run going on is left to finish. While the collector cannot be asked, the pauses last
//!   known stay (each to its `until`).
//! - A run asked for is started here under its key, with its params over the job's; with
//!   `SCHEDULER_HA` its claim decides which replica runs it, so it runs once. A backfill's
//!   slots come the same way, as many at a time as its `max_parallel` allows (the collector
//!   offers no more), each under its slot's own key, with trigger `backfill`.
//! - A cancel names a run this replica claimed: its cancellation fires (a command agent's
//!   process group is killed), and its report says `cancelled` with who and why.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agent_sdk::RunContext;
use agent_sdk::wire::{Commands, RunTrigger};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::run::CancelReason;
use super::{Engine, lock};

/// How often a replica asks the collector for commands.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// How long one ask may take before the next.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a run asked for is remembered as started here (the collector stops offering it
/// once its run exists, or after 10 minutes).
const ASKED_MEMORY: Duration = Duration::from_secs(15 * 60);

/// The jobs paused, each until when (`None`: until resumed).
pub(super) type Paused = HashMap<String, Option<DateTime<Utc>>>;

impl Engine {
    /// Asks for commands every [`POLL_EVERY`] until the engine stops firing.
    pub(super) async fn poll_commands(&self) {
        let mut failing = false;
        loop {
            match self.fetch_commands().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("the collector answers for commands again");
                }
                Ok(()) => {}
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(error = %err, "commands (pause, run now, cancel) cannot be fetched from the collector: the pauses known last stay until it answers");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_EVERY) => {}
                () = self.0.stop_firing.cancelled() => return,
            }
        }
    }

    /// One ask, applied.
    pub(super) async fn fetch_commands(&self) -> Result<(), agent_sdk::client::SendError> {
        let Some(deliverer) = &self.0.deliverer else {
            return Ok(());
        };
        let commands = deliverer
            .client()
            .commands(&self.0.claimant, POLL_TIMEOUT)
            .await?;
        self.apply(commands);
        Ok(())
    }

    fn apply(&self, commands: Commands) {
        let Commands {
            paused,
            runs,
            cancels,
        } = commands;
        let paused: Paused = paused
            .into_iter()
            .filter(|p| self.0.by_name.contains_key(&p.job))
            .map(|p| (p.job, p.until))
            .collect();
        {
            let mut known = lock(&self.0.paused);
            for (job, until) in &paused {
                if !known.contains_key(job) {
                    tracing::info!(job, ?until, "job paused: its slots are skipped");
                }
            }
            for job in known.keys().filter(|job| !paused.contains_key(*job)) {
                tracing::info!(job, "job resumed");
            }
            *known = paused;
        }

        for run in runs {
            let Some(state) = self.job(&run.job) else {
                continue;
            };
            {
                let mut asked = lock(&self.0.asked);
                asked.retain(|_, at| at.elapsed() < ASKED_MEMORY);
                if asked.insert(run.run_key, Instant::now()).is_some() {
                    continue;
                }
            }
            if self.0.stop_firing.is_cancelled() {
                return;
            }
            let ctx = RunContext::new(&run.job)
                .with_run_key(run.run_key)
                .with_params(run.params.unwrap_or_default());
            let ctx = match run.scheduled_for {
                Some(slot) => {
                    tracing::info!(job = run.job, run_key = %run.run_key, %slot, "slot backfilled by an operator");
                    ctx.scheduled(slot).with_trigger(RunTrigger::Backfill)
                }
                None => {
                    tracing::info!(job = run.job, run_key = %run.run_key, "run asked for by an operator");
                    ctx
                }
            };
            self.spawn_run(state, ctx);
        }

        for cancel in cancels {
            let Some(state) = self.job(&cancel.job) else {
                continue;
            };
            if let Some((token, reason)) = lock(&state.running).get_mut(&cancel.run_key)
                && !matches!(reason, Some(CancelReason::Operator(_)))
            {
                tracing::warn!(job = cancel.job, run_key = %cancel.run_key, reason = cancel.reason, "run cancelled by an operator");
                *reason = Some(CancelReason::Operator(cancel.reason));
                token.cancel();
            }
        }
    }

    /// Whether `job` is paused at `now`.
    pub(super) fn is_paused(&self, job: &str, now: DateTime<Utc>) -> bool {
        lock(&self.0.paused)
            .get(job)
            .is_some_and(|until| until.is_none_or(|until| now < until))
    }
}

/// A run asked for by hand, as remembered here: its key.
pub(super) type Asked = HashMap<Uuid, Instant>;
