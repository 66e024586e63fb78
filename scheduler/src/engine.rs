//! Fires jobs on their schedules and runs them: concurrency policies, a global limit on runs
//! in flight, timeouts, retries, delivery, and a clean stop.
//!
//! State kept in `<spool>/state/` makes two promises hold across restarts:
//! - `last-fires.json`: each job's last slot fired (one file for all jobs, written once a
//!   minute and on stop), so that ticks missed while the scheduler was down are handled by the
//!   job's misfire policy. A slightly stale value can only re-fire a slot already run, whose
//!   `run_key` (derived from the slot) the collector stores once;
//! - `runs.journal` ([`Journal`]): every run not yet delivered or spooled, with its current
//!   report: while the agent runs, a "failed: interrupted" one, replaced by the real one when it
//!   finishes. What a killed scheduler leaves there is delivered on the next start, so a run
//!   neither vanishes nor is lost between finishing and being spooled.
//!
//! Neither is fsynced: they must survive the process dying, which the page cache does; the
//! spool's reports, which must survive the machine, are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agent_sdk::client::{Deliverer, Outcome, Spool};
use agent_sdk::wire::{RunReport, RunStatus};
use agent_sdk::{RunContext, execute};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::journal::Journal;
use crate::schedule::{ConcurrencyPolicy, Job, MisfirePolicy};

/// How stale the recorded last fires may get.
const SAVE_LAST_FIRES_EVERY: Duration = Duration::from_secs(60);

/// Run keys of scheduled runs are derived from (job, slot): two scheduler replicas firing the
/// same slot produce the same key, and the collector stores the run once.
const RUN_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x5c0e_d01e_a6e7_4f1a_9c3b_7a11_0000_0001);

/// What `/jobs` shows for one job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobStatus {
    pub agent: String,
    pub runs_agent: String,
    pub schedule: String,
    pub timezone: String,
    pub enabled: bool,
    pub next_fire: Option<DateTime<Utc>>,
    pub last_run: Option<LastRun>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Runs in progress now.
    pub running: usize,
    pub skipped_ticks: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub started_at: DateTime<Utc>,
    pub status: RunStatus,
    pub duration_ms: i64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelReason {
    Replaced,
    Shutdown,
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
    permits: Arc<Semaphore>,
    /// `None` when delivery is off (`serve --no-push`): runs are logged only.
    deliverer: Option<Deliverer>,
    state_dir: PathBuf,
    /// Opened by [`Engine::start`].
    journal: OnceLock<Journal>,
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
        let state_dir = deliverer.spool().dir().join("state");
        Self::build(jobs, Some(deliverer), state_dir, max_concurrent_runs)
    }

    /// An engine that runs its jobs and logs their results but delivers nothing (a dry run of a
    /// schedule file, a benchmark of the firing); its state still lives in `spool`.
    pub fn without_delivery(jobs: Vec<Job>, spool: &Spool, max_concurrent_runs: usize) -> Self {
        Self::build(jobs, None, spool.dir().join("state"), max_concurrent_runs)
    }

    fn build(
        jobs: Vec<Job>,
        deliverer: Option<Deliverer>,
        state_dir: PathBuf,
        max_concurrent_runs: usize,
    ) -> Self {
        let jobs = jobs
            .into_iter()
            .map(|job| {
                Arc::new(JobState {
                    status: Mutex::new(JobStatus {
                        agent: job.name.clone(),
                        runs_agent: job.agent.name().to_owned(),
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
        Self(Arc::new(Inner {
            jobs,
            permits: Arc::new(Semaphore::new(max_concurrent_runs)),
            deliverer,
            state_dir,
            journal: OnceLock::new(),
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
        let engine = self.clone();
        self.0.tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(SAVE_LAST_FIRES_EVERY) => engine.save_last_fires().await,
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
                ..lock(&s.status).clone()
            })
            .collect()
    }

    /// Runs `name` now, whatever its schedule says.
    pub fn trigger(&self, name: &str) -> Result<Uuid, TriggerError> {
        if self.0.stop_firing.is_cancelled() {
            return Err(TriggerError::ShuttingDown);
        }
        let state = self
            .0
            .jobs
            .iter()
            .find(|s| s.job.name == name)
            .ok_or_else(|| TriggerError::NoSuchJob(name.to_owned()))?;
        let run_key = Uuid::new_v4();
        self.spawn_run(state.clone(), RunContext::new(name).with_run_key(run_key));
        Ok(run_key)
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

    /// One job's clock: sleep until the next slot, fire, repeat.
    async fn clock(&self, state: Arc<JobState>) {
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
        // Bounded: a per-second job down for a day has 86 400 slots; only the latest matters.
        for _ in 0..100_000 {
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

    fn last_fires_path(&self) -> PathBuf {
        self.0.state_dir.join("last-fires.json")
    }

    /// Reads `last-fires.json`, and the one-file-per-job `<job>.last-fire` of earlier versions.
    fn load_last_fires(&self) {
        let saved: HashMap<String, DateTime<Utc>> = std::fs::read(self.last_fires_path())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        for state in &self.0.jobs {
            let legacy = || {
                let path = self
                    .0
                    .state_dir
                    .join(format!("{}.last-fire", state.job.name));
                std::fs::read_to_string(path).ok()?.trim().parse().ok()
            };
            *lock(&state.last_fire) = saved.get(&state.job.name).copied().or_else(legacy);
        }
    }

    /// Writes every job's last fire to `last-fires.json` (whole or not at all).
    async fn save_last_fires(&self) {
        let fires: HashMap<&str, DateTime<Utc>> = self
            .0
            .jobs
            .iter()
            .filter_map(|s| Some((s.job.name.as_str(), (*lock(&s.last_fire))?)))
            .collect();
        // Nothing fired (or the engine never started): keep what the file says.
        if fires.is_empty() {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(&fires) else {
            return;
        };
        let path = self.last_fires_path();
        let written = tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await;
        if let Err(err) = written.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
            tracing::error!(error = %err, "cannot record the last fire times (misfire handling after a restart will not know them)");
        }
    }

    fn fire(&self, state: &Arc<JobState>, slot: DateTime<Utc>) {
        let job = &state.job;
        *lock(&state.last_fire) = Some(slot);
        match job.concurrency {
            ConcurrencyPolicy::Forbid if !lock(&state.running).is_empty() => {
                lock(&state.status).skipped_ticks += 1;
                metrics::counter!("scheduler_skipped_ticks_total", "agent" => job.name.clone())
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
        let run_key = Uuid::new_v5(
            &RUN_KEY_NAMESPACE,
            format!("{}@{}", job.name, slot.to_rfc3339()).as_bytes(),
        );
        self.spawn_run(
            state.clone(),
            RunContext::new(&job.name)
                .scheduled(slot)
                .with_run_key(run_key),
        );
    }

    fn spawn_run(&self, state: Arc<JobState>, ctx: RunContext) {
        let ctx = ctx
            .with_params(state.job.params.clone())
            .with_parent_cancellation(&self.0.stop_runs);
        let run_key = ctx.run_key();
        lock(&state.running).insert(run_key, (ctx.cancellation().clone(), None));
        let engine = self.clone();
        self.0.tracker.spawn(async move {
            let report = engine.run(&state, ctx).await;
            engine.finish(&state, run_key, report).await;
        });
    }

    /// Runs with retries, under the global limit, with a marker on disk while it runs.
    async fn run(&self, state: &JobState, ctx: RunContext) -> RunReport {
        let job = &state.job;
        let permit = tokio::select! {
            permit = self.0.permits.clone().acquire_owned() => permit.ok(),
            () = ctx.cancelled() => None,
        };
        let placeholder = interrupted_report(&ctx, Utc::now());
        self.journal(&placeholder).await;

        let mut attempt = 0;
        let started = Utc::now();
        let mut report = loop {
            if permit.is_none() {
                break RunReport {
                    error: Some("cancelled".into()),
                    ..placeholder.clone()
                };
            }
            let report = execute(job.agent.clone(), ctx.clone(), Some(job.timeout)).await;
            if report.error.is_none() || attempt >= job.retries || ctx.is_cancelled() {
                break report;
            }
            let backoff = job.retry_backoff.saturating_mul(1 << attempt.min(10));
            tracing::warn!(job = %job.name, attempt = attempt + 1, error = report.error.as_deref().unwrap_or_default(), ?backoff, "run failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = ctx.cancelled() => break report,
            }
            attempt += 1;
        };
        drop(permit);
        report.started_at = started;
        if let Some(error) = &mut report.error {
            if error.starts_with("cancelled") {
                let reason = lock(&state.running)
                    .get(&ctx.run_key())
                    .and_then(|(_, r)| *r);
                *error = match reason {
                    Some(CancelReason::Replaced) => {
                        "cancelled: replaced by a newer run (concurrency_policy = replace)".into()
                    }
                    _ => "cancelled: the scheduler shut down before the run finished".into(),
                };
            }
            if attempt > 0 {
                *error = format!("after {} attempts: {error}", attempt + 1);
            }
        }
        // From here until it is delivered or spooled, the journal holds the real report.
        self.journal(&report).await;
        report
    }

    async fn journal(&self, report: &RunReport) {
        if let Some(journal) = self.0.journal.get() {
            journal.record(report).await;
        }
    }

    async fn finish(&self, state: &JobState, run_key: Uuid, report: RunReport) {
        let job = &state.job;
        let duration = report.finished_at - report.started_at;
        let status = report.status();
        metrics::counter!("scheduler_runs_total", "agent" => job.name.clone(), "status" => status.as_str()).increment(1);
        metrics::histogram!("scheduler_run_duration_seconds", "agent" => job.name.clone())
            .record(duration.as_seconds_f64());
        if status == RunStatus::Success {
            metrics::gauge!("scheduler_last_success_timestamp_seconds", "agent" => job.name.clone())
                .set(report.finished_at.timestamp() as f64);
        }
        match &report.error {
            None => {
                tracing::info!(job = %job.name, %run_key, duration_ms = duration.num_milliseconds(), metrics = report.metrics.len(), "run succeeded")
            }
            Some(error) => {
                tracing::warn!(job = %job.name, %run_key, duration_ms = duration.num_milliseconds(), error, "run failed")
            }
        }
        {
            let mut s = lock(&state.status);
            s.last_run = Some(LastRun {
                started_at: report.started_at,
                status,
                duration_ms: duration.num_milliseconds(),
                error: report.error.clone(),
            });
            if status == RunStatus::Success {
                s.last_success_at = Some(report.finished_at);
            }
        }
        // The agent is done: the job may fire again while its report is being delivered.
        lock(&state.running).remove(&run_key);
        self.deliver(&report).await;
        if let (Some(journal), Some(key)) = (self.0.journal.get(), report.run_key) {
            journal.done(key);
        }
    }

    async fn deliver(&self, report: &RunReport) {
        let Some(deliverer) = &self.0.deliverer else {
            return;
        };
        let delivered = if self.0.stop_runs.is_cancelled() {
            // Shutting down: one try, then the spool; no backoff to hold the exit.
            deliverer.deliver_once(report).await
        } else {
            deliverer.deliver(report).await
        };
        match delivered {
            Ok(Outcome::Delivered { run_id, .. }) => tracing::debug!(run_id, "report delivered"),
            Ok(Outcome::Spooled | Outcome::Rejected { .. }) => {}
            Err(err) => {
                tracing::error!(error = %err, agent = %report.agent_name, "REPORT LOST: neither delivered nor spooled")
            }
        }
    }

    /// Delivers the runs a process that died left in the journal: finished reports, or failed
    /// ("interrupted") ones if they were still running.
    async fn report_interrupted_runs(&self, journal: &Journal, left: Vec<RunReport>) {
        let legacy = self.legacy_markers(journal).await;
        for report in left.into_iter().chain(legacy) {
            tracing::warn!(agent = %report.agent_name, run_key = ?report.run_key, error = report.error.as_deref().unwrap_or_default(), "the previous scheduler process left this run undelivered: delivering it");
            self.deliver(&report).await;
            if let Some(key) = report.run_key {
                journal.done(key);
            }
        }
    }

    /// The one-file-per-run markers (`state/running/`) of versions before the journal, moved
    /// into the journal.
    async fn legacy_markers(&self, journal: &Journal) -> Vec<RunReport> {
        let dir = self.0.state_dir.join("running");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut reports = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let report = std::fs::read(entry.path())
                .ok()
                .and_then(|bytes| serde_json::from_slice::<RunReport>(&bytes).ok());
            if let Some(report) = report {
                journal.record(&report).await;
                reports.push(report);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        reports
    }
}

/// What is reported if the process dies during the run: failed, with why.
fn interrupted_report(ctx: &RunContext, started_at: DateTime<Utc>) -> RunReport {
    RunReport {
        agent_name: ctx.agent_name().to_owned(),
        metrics: Default::default(),
        started_at,
        finished_at: started_at,
        error: Some("interrupted: the scheduler stopped during the run (killed or crashed); its end time is unknown".into()),
        run_key: Some(ctx.run_key()),
        trigger: Some(ctx.trigger()),
        scheduled_for: ctx.scheduled_for(),
        host: agent_sdk::hostname(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind: keep going.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whole or not at all (rename), without fsync: see the module's note on state.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}
