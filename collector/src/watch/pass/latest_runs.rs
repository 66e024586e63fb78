//! A pass's judgement of each changed agent's latest runs: `failing`, `slow`, a success that
//! resolves them, and a job that pauses itself after its `pause_after_failures` failed runs
//! in a row (its `paused` incident resolved once it is resumed).

use std::collections::{HashMap, HashSet};

use agent_sdk::wire::{IncidentKind, RunStatus};

use super::{CURSOR_MARGIN, Pass};
use crate::store::{RecentRun, StoreError, SummaryChange, SummaryChanges};
use crate::watch::rules::{self, Slowness};

impl Pass {
    /// `failing` and `slow` from each changed agent's latest run, read from the daily summaries
    /// of the last two days (an agent with no run since has not changed); a success resolves
    /// `failing` and `overdue`. Moves the summaries' cursor on.
    pub(super) async fn judge_latest_runs(
        &mut self,
        changes: SummaryChanges,
        changed: &HashSet<String>,
    ) -> Result<(), StoreError> {
        let SummaryChanges {
            rows, seen_until, ..
        } = changes;
        if let Some(newest) = rows.iter().map(|r| r.updated_at).max() {
            let until = newest - CURSOR_MARGIN;
            if seen_until.is_none_or(|seen| until > seen) {
                self.tx.set_summaries_cursor(until).await?;
            }
        }
        let mut latest: HashMap<String, SummaryChange> = HashMap::new();
        for row in rows.into_iter().filter(|r| changed.contains(&r.agent_name)) {
            match latest.get(&row.agent_name) {
                Some(seen) if seen.day >= row.day => {}
                _ => {
                    latest.insert(row.agent_name.clone(), row);
                }
            }
        }
        let mut agents: Vec<&SummaryChange> = latest.values().collect();
        agents.sort_by(|a, b| a.agent_name.cmp(&b.agent_name));
        for row in agents {
            self.judge_latest_run(row).await?;
        }
        Ok(())
    }

    async fn judge_latest_run(&mut self, row: &SummaryChange) -> Result<(), StoreError> {
        let agent = row.agent_name.as_str();
        // The runs are read only when they can tell something: a run today as long as the
        // floor of `slow`, or such an incident to resolve; a failure with `failing` not open.
        let slow_possible = row
            .max_duration_ms
            .is_some_and(|ms| ms >= self.rules.slow_min_ms())
            || self.known.is_open(agent, IncidentKind::Slow);
        let failed = row.last_status.as_deref() == Some(RunStatus::Failed.as_str());
        // A job that pauses itself after failures, failing and not paused: its runs tell.
        let pause_after = self
            .known
            .pause_after
            .get(agent)
            .copied()
            .filter(|_| failed && !self.known.paused_at(agent, self.now));
        let recent = if slow_possible
            || (failed && !self.known.is_open(agent, IncidentKind::Failing))
            || pause_after.is_some()
        {
            let wanted = Ord::max(self.rules.recent_runs(), pause_after.map_or(0, u64::from));
            self.tx.recent_runs(agent, wanted).await?
        } else {
            Vec::new()
        };
        if let Some(failures) = pause_after {
            self.pause_after_failures(agent, failures, &recent).await?;
        }
        if slow_possible {
            match rules::slowness(&recent, &self.rules) {
                Slowness::Unknown => {}
                Slowness::Slow {
                    summary,
                    took_ms,
                    median_ms,
                } => {
                    if self.open(agent, IncidentKind::Slow, &summary).await? {
                        tracing::warn!(agent, took_ms, median_ms, "incident opened: slow");
                    }
                }
                Slowness::Usual => {
                    if self.resolve(agent, IncidentKind::Slow).await? {
                        tracing::info!(agent, "incident resolved: slow (a run of usual length)");
                    }
                }
            }
        }
        match row.last_status.as_deref() {
            Some(status) if status == RunStatus::Success.as_str() => {
                for kind in [IncidentKind::Failing, IncidentKind::Overdue] {
                    if self.resolve(agent, kind).await? {
                        tracing::info!(
                            agent,
                            kind = kind.as_str(),
                            "incident resolved (a successful run)"
                        );
                    }
                }
            }
            Some(status) if status == RunStatus::Failed.as_str() => {
                if let Some(summary) = rules::failing(&recent, self.rules.failing_after)
                    && self.open(agent, IncidentKind::Failing, &summary).await?
                {
                    tracing::warn!(agent, last_run_at = ?row.last_run_at, "incident opened: failing");
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Pauses the job `agent` when its latest `failures` runs (newest first in `recent`) all
    /// failed since it was last resumed, and opens its `paused` incident.
    async fn pause_after_failures(
        &mut self,
        agent: &str,
        failures: u32,
        recent: &[RecentRun],
    ) -> Result<(), StoreError> {
        let Some(summary) = rules::failing(recent, failures) else {
            return Ok(());
        };
        // The oldest of those failures: a resume after it means an operator saw them.
        let Some(since) = recent
            .get((failures as usize).saturating_sub(1))
            .map(|r| r.started_at)
        else {
            return Ok(());
        };
        if self.known.resumed_after(agent, since) {
            return Ok(());
        }
        self.tx
            .pause_after_failures_of(agent, failures, self.now)
            .await?;
        self.known
            .paused
            .entry(agent.to_owned())
            .or_default()
            .push((self.now, None));
        let summary = format!("paused itself: {summary}; resume it to run it again");
        if self.open(agent, IncidentKind::Paused, &summary).await? {
            tracing::warn!(
                agent,
                failures,
                "job paused itself after failed runs in a row"
            );
        }
        Ok(())
    }

    /// Resolves the `paused` incident of each job no longer paused (resumed by hand).
    pub(super) async fn resolve_resumed(&mut self) -> Result<(), StoreError> {
        let paused: Vec<String> = self
            .known
            .open
            .iter()
            .filter(|(_, kind)| *kind == IncidentKind::Paused)
            .map(|(agent, _)| agent.clone())
            .collect();
        for agent in paused {
            if !self.known.paused_at(&agent, self.now)
                && self.resolve(&agent, IncidentKind::Paused).await?
            {
                tracing::info!(agent, "incident resolved: paused (the job was resumed)");
            }
        }
        Ok(())
    }
}
