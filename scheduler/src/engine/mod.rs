//! Fires jobs on their schedules and runs them. A job is an entry of the schedule file; it runs
//! an agent (its own name's, or the one its `agent` names) with its parameters.
//!
//! - [`clock`]: each job's clock: the slots of its cron, the slots missed during downtime
//!   (`catchup_window`), firing under the concurrency policy after the job's jitter, and the
//!   run key of a slot;
//! - [`commands`]: what operators ask through the collector (pause, run now, backfill,
//!   cancel), polled each second;
//! - [`run`]: one run: the global limit, the timeout and retries of its attempts, the journal,
//!   its metrics and log line, delivery;
//! - [`last_fires`] and [`journal`]: the state on disk, in `<spool>/state/`: each job's last
//!   slot fired (so that downtime is handled by its `catchup_window`) and every run not yet
//!   delivered or spooled (so that a killed scheduler loses none).

mod claim;
mod clock;
mod commands;
mod journal;
mod last_fires;
mod run;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agent_sdk::RunContext;
use agent_sdk::client::{Deliverer, Spool};
use agent_sdk::wire::RunStatus;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::schedule::Job;
use journal::Journal;
use run::CancelReason;

pub use claim::{CLAIM_WAIT, Claims, NotRun, claimant, run_start};
pub use clock::{jitter_of, run_key_of};
pub use commands::POLL_EVERY;

/// What `/jobs` shows for one job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobStatus {
    /// The job: its name in the schedule file.
    pub job: String,
    /// The registered agent it runs.
    pub agent: String,
    pub schedule: String,
    pub timezone: String,
    pub enabled: bool,
    pub next_fire: Option<DateTime<Utc>>,
    pub last_run: Option<LastRun>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Runs in progress now.
    pub running: usize,
    pub skipped_ticks: u64,
    /// Paused from the platform (`POST /jobs/{job}/pause`): its slots are skipped.
    pub paused: bool,
    /// Slots skipped because the job was paused.
    pub paused_ticks: u64,
    /// Runs another scheduler claimed (or that had run already): not run here.
    pub claimed_elsewhere: u64,
    /// With `SCHEDULER_HA`: slots not run because the collector could not be asked.
    pub claims_failed: u64,
    pub last_not_run: Option<NotRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub started_at: DateTime<Utc>,
    pub status: RunStatus,
    pub duration_ms: i64,
    pub error: Option<String>,
}

struct JobState {
    job: Job,
    status: Mutex<JobStatus>,
    /// Runs in progress: their cancellation and why it was used.
    running: Mutex<HashMap<Uuid, (CancellationToken, Option<CancelReason>)>>,
    /// The last slot fired (or skipped as a misfire), as `last-fires.json` keeps it.
    last_fire: Mutex<Option<DateTime<Utc>>>,
}

struct Inner {
    jobs: Vec<Arc<JobState>>,
    /// The same jobs by name (commands and triggers name them).
    by_name: HashMap<String, Arc<JobState>>,
    permits: Arc<Semaphore>,
    /// `None` when delivery is off (`serve --no-push`): runs are logged only.
    deliverer: Option<Deliverer>,
    /// `SCHEDULER_HA`: a run's start is a claim, and only a granted claim runs the agent.
    high_availability: bool,
    /// This process, as the collector knows it: host, process id, a random part.
    claimant: String,
    /// Added to a run's longest possible time for the deadline announced with its start.
    deadline_grace: TimeDelta,
    state_dir: PathBuf,
    /// Opened by [`Engine::start`].
    journal: OnceLock<Journal>,
    /// The jobs paused from the platform, as the collector said last.
    paused: Mutex<commands::Paused>,
    /// Runs asked for by hand that this process has started.
    asked: Mutex<commands::Asked>,
    /// Stops firing.
    stop_firing: CancellationToken,
    /// Cancels running agents (after the shutdown grace).
    stop_runs: CancellationToken,
    tracker: TaskTracker,
}

/// The running scheduler. Cheap to clone.
#[derive(Clone)]
pub struct Engine(Arc<Inner>);

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no job named `{0}`")]
    NoSuchJob(String),
    #[error("the scheduler is shutting down")]
    ShuttingDown,
}

impl Engine {
    pub fn new(jobs: Vec<Job>, deliverer: Deliverer, max_concurrent_runs: usize) -> Self {
        Self::with_claims(jobs, deliverer, max_concurrent_runs, Claims::default())
    }

    /// With `claims.high_availability`, a run's agent runs only once the collector has granted
    /// its claim: replicas with the same schedule run each slot once.
    pub fn with_claims(
        jobs: Vec<Job>,
        deliverer: Deliverer,
        max_concurrent_runs: usize,
        claims: Claims,
    ) -> Self {
        let state_dir = deliverer.spool().dir().join("state");
        Self::build(
            jobs,
            Some(deliverer),
            state_dir,
            max_concurrent_runs,
            claims,
        )
    }

    /// An engine that runs its jobs and logs their results but delivers nothing (a dry run of a
    /// schedule file, a benchmark of the firing); its state still lives in `spool`.
    pub fn without_delivery(jobs: Vec<Job>, spool: &Spool, max_concurrent_runs: usize) -> Self {
        Self::build(
            jobs,
            None,
            spool.dir().join("state"),
            max_concurrent_runs,
            Claims::default(),
        )
    }

    fn build(
        jobs: Vec<Job>,
        deliverer: Option<Deliverer>,
        state_dir: PathBuf,
        max_concurrent_runs: usize,
        claims: Claims,
    ) -> Self {
        let jobs: Vec<Arc<JobState>> = jobs
            .into_iter()
            .map(|job| {
                Arc::new(JobState {
                    status: Mutex::new(JobStatus {
                        job: job.name.clone(),
                        agent: job.agent.name().to_owned(),
                        schedule: job.cron.expression().to_owned(),
                        timezone: job.cron.timezone().name().to_owned(),
                        enabled: job.enabled,
                        ..JobStatus::default()
                    }),
                    job,
                    running: Mutex::new(HashMap::new()),
                    last_fire: Mutex::new(None),
                })
            })
            .collect();
        let by_name = jobs
            .iter()
            .map(|state| (state.job.name.clone(), state.clone()))
            .collect();
        Self(Arc::new(Inner {
            jobs,
            by_name,
            permits: Arc::new(Semaphore::new(max_concurrent_runs)),
            deliverer,
            high_availability: claims.high_availability,
            deadline_grace: TimeDelta::from_std(claims.deadline_grace).unwrap_or(TimeDelta::MAX),
            claimant: claim::claimant(),
            state_dir,
            journal: OnceLock::new(),
            paused: Mutex::default(),
            asked: Mutex::default(),
            stop_firing: CancellationToken::new(),
            stop_runs: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }))
    }

    /// Reports runs a previous process left unfinished, then starts every enabled job's clock.
    pub async fn start(&self) -> std::io::Result<()> {
        let (journal, left) = Journal::open(&self.0.state_dir.join("runs.journal"))?;
        let journal = self.0.journal.get_or_init(|| journal).clone();
        self.report_interrupted_runs(&journal, left).await;
        self.load_last_fires();
        if self.0.deliverer.is_some() {
            // The pauses known before the first slot fires (a collector away answers at once
            // or within the ask's timeout); then every POLL_EVERY.
            if let Err(err) = self.fetch_commands().await {
                tracing::warn!(error = %err, "commands (pause, run now, cancel) cannot be fetched from the collector yet");
            }
            let engine = self.clone();
            self.0
                .tracker
                .spawn(async move { engine.poll_commands().await });
        }
        let engine = self.clone();
        self.0.tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(last_fires::SAVE_EVERY) => engine.save_last_fires().await,
                    () = engine.0.stop_firing.cancelled() => break,
                }
            }
        });
        for state in &self.0.jobs {
            if state.job.enabled {
                let engine = self.clone();
                let state = state.clone();
                self.0
                    .tracker
                    .spawn(async move { engine.clock(state).await });
            }
        }
        Ok(())
    }

    pub fn statuses(&self) -> Vec<JobStatus> {
        self.0
            .jobs
            .iter()
            .map(|s| JobStatus {
                running: lock(&s.running).len(),
                paused: self.is_paused(&s.job.name, Utc::now()),
                ..lock(&s.status).clone()
            })
            .collect()
    }

    /// Runs the job `name` now, whatever its schedule says.
    pub fn trigger(&self, name: &str) -> Result<Uuid, TriggerError> {
        if self.0.stop_firing.is_cancelled() {
            return Err(TriggerError::ShuttingDown);
        }
        let state = self
            .job(name)
            .ok_or_else(|| TriggerError::NoSuchJob(name.to_owned()))?;
        let run_key = Uuid::new_v4();
        self.spawn_run(state, RunContext::new(name).with_run_key(run_key));
        Ok(run_key)
    }

    /// The job named `name`.
    fn job(&self, name: &str) -> Option<Arc<JobState>> {
        self.0.by_name.get(name).cloned()
    }

    /// Stops firing, gives running agents `grace` to finish, cancels the rest (reported as
    /// failed), and waits until every report is delivered or spooled.
    pub async fn shutdown(&self, grace: Duration) {
        self.0.stop_firing.cancel();
        self.0.tracker.close();
        if tokio::time::timeout(grace, self.0.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "runs still going after the shutdown grace: cancelling them"
            );
            for state in &self.0.jobs {
                for (_, reason) in lock(&state.running).values_mut() {
                    reason.get_or_insert(CancelReason::Shutdown);
                }
            }
            self.0.stop_runs.cancel();
            self.0.tracker.wait().await;
        }
        self.save_last_fires().await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind: keep going.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
