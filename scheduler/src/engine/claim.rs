//! A run's start, announced to the collector before its agent runs (`POST /runs`): the run is
//! visible as `running` while it runs, and closed as overdue if its result never comes. With
//! high availability (`SCHEDULER_HA`) the start is a claim: replicas compute the same `run_key`
//! for a slot, and only the one whose claim the collector accepts runs the agent.

use std::time::Duration;

use agent_sdk::RunContext;
use agent_sdk::client::StartAnswer;
use agent_sdk::wire::RunStart;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::{Engine, JobState, lock};
use crate::schedule::{ConcurrencyPolicy, Job};

/// How long a single scheduler's start may take to be answered (in the background; it is then
/// skipped, not spooled: the report still arrives).
const START_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a single scheduler's run waits for its start to be answered before the agent runs
/// anyway: long enough that a healthy collector stores the start first (the run is seen as
/// running, and its report never overtakes it), short enough that a collector that is away never
/// delays a run past its next tick.
const START_WAIT: Duration = Duration::from_millis(200);

/// How long a replica waits for its claim to be answered before giving the slot up.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);

/// How runs are claimed: `SCHEDULER_HA` and `SCHEDULER_DEADLINE_GRACE`.
#[derive(Debug, Clone, Copy)]
pub struct Claims {
    pub high_availability: bool,
    pub deadline_grace: Duration,
}

impl Default for Claims {
    fn default() -> Self {
        Self {
            high_availability: false,
            deadline_grace: Duration::from_secs(60),
        }
    }
}

/// Why a fired run did not run here.
#[derive(Debug, Clone, Serialize)]
pub struct NotRun {
    pub at: DateTime<Utc>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub why: String,
}

impl Engine {
    /// Announces `ctx`'s start; `true` when this process is to run the agent.
    pub(super) async fn claim(&self, state: &JobState, ctx: &RunContext) -> bool {
        let Some(deliverer) = &self.0.deliverer else {
            return true;
        };
        let job = &state.job;
        let start = run_start(job, ctx, &self.0.claimant, self.0.deadline_grace);
        let answer = if self.0.high_availability {
            deliverer.client().start(&start, CLAIM_TIMEOUT).await
        } else {
            // Here a start never holds a run up: it is answered in the background, bounded, and
            // the agent runs when no answer came within START_WAIT.
            let client = deliverer.client().clone();
            let body = start.clone();
            let mut announce =
                tokio::spawn(async move { client.start(&body, START_TIMEOUT).await });
            match tokio::time::timeout(START_WAIT, &mut announce).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) | Err(_) => {
                    tracing::debug!(job = %job.name, run_key = %start.run_key, "start not answered yet; running the agent");
                    return true;
                }
            }
        };
        match answer {
            Ok(StartAnswer::Started { .. }) => true,
            Ok(StartAnswer::Claimed(claim)) => {
                let why = format!(
                    "claimed by {} on {} (run {}, {})",
                    claim.claimant.as_deref().unwrap_or("another scheduler"),
                    claim.host.as_deref().unwrap_or("an unknown host"),
                    claim.run_id,
                    claim.status.as_str(),
                );
                tracing::info!(job = %job.name, run_key = %start.run_key, "{why}: not run here");
                self.not_run(state, ctx, "claimed_elsewhere", why);
                false
            }
            Err(err) if self.0.high_availability => {
                let why = format!("the collector could not be asked for the claim: {err}");
                tracing::warn!(job = %job.name, run_key = %start.run_key, "slot not run ({why}): with SCHEDULER_HA a slot runs only once claimed");
                self.not_run(state, ctx, "claim_failed", why);
                false
            }
            Err(err) => {
                tracing::debug!(job = %job.name, error = %err, "start not announced; running anyway");
                true
            }
        }
    }

    fn not_run(&self, state: &JobState, ctx: &RunContext, reason: &'static str, why: String) {
        metrics::counter!("scheduler_runs_not_run_total", "job" => state.job.name.clone(), "reason" => reason)
            .increment(1);
        let mut status = lock(&state.status);
        match reason {
            "claimed_elsewhere" => status.claimed_elsewhere += 1,
            _ => status.claims_failed += 1,
        }
        status.last_not_run = Some(NotRun {
            at: Utc::now(),
            scheduled_for: ctx.scheduled_for(),
            why,
        });
    }
}

/// This process, as the collector knows it: host, process id, a random part.
pub fn claimant() -> String {
    format!(
        "{}:{}:{}",
        agent_sdk::hostname().unwrap_or_else(|| "unknown".into()),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// The start of `ctx`'s run of `job`, as `claimant` announces it now.
pub fn run_start(job: &Job, ctx: &RunContext, claimant: &str, grace: TimeDelta) -> RunStart {
    let now = Utc::now();
    RunStart {
        agent_name: ctx.agent_name().to_owned(),
        run_key: ctx.run_key(),
        started_at: now,
        trigger: Some(ctx.trigger()),
        scheduled_for: ctx.scheduled_for(),
        host: agent_sdk::hostname(),
        claimant: claimant.to_owned(),
        // forbid holds across replicas: one running run of the job at a time, anywhere.
        exclusive: (job.concurrency == ConcurrencyPolicy::Forbid).then(|| job.name.clone()),
        deadline: Some(now + longest(job) + grace),
    }
}

/// How long a claim may wait for its answer.
pub const CLAIM_WAIT: Duration = CLAIM_TIMEOUT;

/// The longest a run of `job` can take: every attempt to its timeout, every backoff between.
fn longest(job: &Job) -> TimeDelta {
    let backoffs: Duration = (0..job.retries)
        .map(|attempt| job.retry_backoff.saturating_mul(1 << attempt.min(10)))
        .sum();
    let attempts = job.timeout.saturating_mul(job.retries.saturating_add(1));
    TimeDelta::from_std(attempts.saturating_add(backoffs)).unwrap_or(TimeDelta::MAX)
}
