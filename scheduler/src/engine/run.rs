//! One run of a job: a place under the global limit, its attempts (each with the job's timeout,
//! retried with backoff while the job allows), the journal on disk meanwhile, then its metrics,
//! its log line and its delivery.

use std::sync::Arc;
use std::time::Duration;

use agent_sdk::client::Outcome;
use agent_sdk::wire::{RunReport, RunStatus};
use agent_sdk::{RunContext, execute};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::journal::Journal;
use super::{Engine, JobState, LastRun, lock};

/// Why a run was cancelled from outside (a timeout is the attempt's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CancelReason {
    Replaced,
    Shutdown,
    /// `POST /runs/{id}/cancel`: who and why, as the collector words it.
    Operator(String),
}

impl Engine {
    /// Starts a run of `state`'s job; `ctx`'s params (a run asked for by hand) go over the
    /// job's own.
    pub(super) fn spawn_run(&self, state: Arc<JobState>, ctx: RunContext) {
        // Not awaited: the tracker waits for the run at shutdown.
        drop(self.spawn_run_after(state, ctx, Duration::ZERO));
    }

    /// [`Engine::spawn_run`], the run waiting `delay` first (a job's jitter); the handle
    /// resolves when the run is done and delivered (or not run).
    pub(super) fn spawn_run_after(
        &self,
        state: Arc<JobState>,
        ctx: RunContext,
        delay: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let mut params = state.job.params.clone();
        params.extend(ctx.params().clone());
        let ctx = ctx
            .with_params(params)
            .with_parent_cancellation(&self.0.stop_runs);
        let run_key = ctx.run_key();
        lock(&state.running).insert(run_key, (ctx.cancellation().clone(), None));
        let engine = self.clone();
        self.0.tracker.spawn(async move {
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    // Cancelled before it started (shutdown, replaced): never claimed, never
                    // run, nothing reported.
                    () = ctx.cancelled() => {
                        lock(&state.running).remove(&run_key);
                        return;
                    }
                }
            }
            match engine.run(&state, ctx).await {
                Some(report) => engine.finish(&state, run_key, report).await,
                // Claimed by another scheduler, or cancelled before its turn: nothing ran here,
                // nothing to report. A run asked for through the collector is asked for again
                // at the next poll while no run holds its key (a `forbid` job's running run
                // held its exclusive key, say).
                None => {
                    lock(&state.running).remove(&run_key);
                    lock(&engine.0.asked).remove(&run_key);
                }
            }
        })
    }

    /// Runs with retries, under the global limit, with the run journalled while it goes on;
    /// `None` when the run is not this process's to run (another scheduler claimed it, or it
    /// was cancelled before its turn came): nothing to report.
    async fn run(&self, state: &JobState, ctx: RunContext) -> Option<RunReport> {
        let job = &state.job;
        let permit = tokio::select! {
            permit = self.0.permits.clone().acquire_owned() => permit.ok(),
            () = ctx.cancelled() => None,
        };
        let Some(permit) = permit else {
            // Cancelled (shutdown, replace) while waiting for a place (MAX_CONCURRENT_RUNS): never claimed, never
            // run, so nothing is sent under the slot's key, which another replica may hold.
            tracing::warn!(job = %job.name, run_key = %ctx.run_key(), scheduled_for = ?ctx.scheduled_for(), "run cancelled while waiting for a place (MAX_CONCURRENT_RUNS): not run, nothing reported");
            return None;
        };
        // Announced when the agent is about to run, so that the replica with a free place
        // claims the slot.
        if !self.claim(state, &ctx).await {
            return None;
        }
        let placeholder = interrupted_report(&ctx, Utc::now());
        self.journal(&placeholder).await;

        let mut attempt = 0;
        let started = Utc::now();
        let mut report = loop {
            // Each attempt has a cancellation of its own: its timeout ends the attempt, while
            // cancelling the run (shutdown, replace) ends every attempt.
            let report = execute(job.agent.clone(), ctx.attempt(), Some(job.timeout)).await;
            let retry = match &report.error {
                None => false,
                Some(_) if attempt >= job.retries || ctx.is_cancelled() => false,
                Some(error) => job.retry_on_timeout || !error.starts_with("timed out"),
            };
            if !retry {
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
            let reason = lock(&state.running)
                .get(&ctx.run_key())
                .and_then(|(_, r)| r.clone());
            match reason {
                // Whatever the attempt was doing (running, or waiting to retry), it failed
                // because an operator said so.
                Some(CancelReason::Operator(why)) => {
                    *error = why;
                    report.cancelled = true;
                }
                Some(CancelReason::Replaced) if error.starts_with("cancelled") => {
                    *error =
                        "cancelled: replaced by a newer run (concurrency_policy = replace)".into();
                }
                _ if error.starts_with("cancelled") => {
                    *error = "cancelled: the scheduler shut down before the run finished".into();
                }
                _ => {}
            }
            if attempt > 0 && !report.cancelled {
                *error = format!("after {} attempts: {error}", attempt + 1);
            }
        }
        // From here until it is delivered or spooled, the journal holds the real report.
        self.journal(&report).await;
        Some(report)
    }

    async fn journal(&self, report: &RunReport) {
        if let Some(journal) = self.0.journal.get() {
            journal.record(report).await;
        }
    }

    async fn finish(&self, state: &JobState, run_key: Uuid, report: RunReport) {
        let job = &state.job;
        let agent = job.agent.name();
        let duration = report.finished_at - report.started_at;
        let status = report.status();
        metrics::counter!("scheduler_runs_total", "job" => job.name.clone(), "agent" => agent, "status" => status.as_str()).increment(1);
        metrics::histogram!("scheduler_run_duration_seconds", "job" => job.name.clone())
            .record(duration.as_seconds_f64());
        if status == RunStatus::Success {
            metrics::gauge!("scheduler_last_success_timestamp_seconds", "job" => job.name.clone())
                .set(report.finished_at.timestamp() as f64);
        }
        match &report.error {
            None => {
                tracing::info!(job = %job.name, agent, %run_key, duration_ms = duration.num_milliseconds(), metrics = report.metrics.len(), "run succeeded")
            }
            Some(error) => {
                tracing::warn!(job = %job.name, agent, %run_key, duration_ms = duration.num_milliseconds(), error, "run failed")
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
                tracing::error!(error = %err, job = %report.agent_name, "REPORT LOST: neither delivered nor spooled")
            }
        }
    }

    /// Delivers the runs a process that died left in the journal: finished reports, or failed
    /// ("interrupted") ones if they were still running.
    pub(super) async fn report_interrupted_runs(&self, journal: &Journal, left: Vec<RunReport>) {
        for report in left {
            tracing::warn!(job = %report.agent_name, run_key = ?report.run_key, error = report.error.as_deref().unwrap_or_default(), "the previous scheduler process left this run undelivered: delivering it");
            self.deliver(&report).await;
            if let Some(key) = report.run_key {
                journal.done(key);
            }
        }
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
        cancelled: false,
    }
}
