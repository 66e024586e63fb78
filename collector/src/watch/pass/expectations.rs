//! A pass's judgement of the expectations due: which slots were answered, on time or late,
//! which missed (unless the job was paused then), and whether the agent has gone stale.

use chrono::{DateTime, TimeDelta, Utc};

use super::{Pass, RUNS_PER_PASS};
use crate::domain::Cadence;
use crate::store::{ExpectationRow, StoreError};
use crate::watch::rules::{self, Judged, Staleness};
use agent_sdk::wire::IncidentKind;

impl Pass {
    /// Judges `expectation`'s slots (at most `budget`) and its staleness, and records its
    /// progress: how many slots it judged.
    pub(super) async fn judge_expectation(
        &mut self,
        expectation: &ExpectationRow,
        cadence: &Cadence,
        budget: usize,
    ) -> Result<usize, StoreError> {
        let (judged, pending, check_at) = self.due_slots(expectation, cadence, budget).await?;
        let checked = rules::progress(cadence, expectation.checked_until, &judged);
        self.record_slots(expectation, &judged).await?;
        let period = rules::period(cadence, pending);
        let stale_at = self.judge_staleness(expectation, period).await?;
        let next_check = [check_at, stale_at].into_iter().flatten().min();
        if checked > expectation.checked_until || next_check != expectation.next_check_at {
            self.tx
                .set_expectation_progress(
                    expectation,
                    Ord::max(checked, expectation.checked_until),
                    next_check,
                )
                .await?;
        }
        Ok(judged.len())
    }

    /// `expectation`'s slots past their grace, each with the run that answered it; a cron's
    /// first slot not yet judged; when a slot is next due to be judged, if no run arrives.
    async fn due_slots(
        &mut self,
        expectation: &ExpectationRow,
        cadence: &Cadence,
        budget: usize,
    ) -> Result<(Vec<Judged>, Option<DateTime<Utc>>, Option<DateTime<Utc>>), StoreError> {
        let agent = expectation.agent_name.as_str();
        let grace = expectation.grace();
        let checked = expectation.checked_until;
        let last_run = self.known.last_run(agent);
        match cadence {
            Cadence::Cron(_) => {
                let due = rules::due_cron_slots(cadence, checked, grace, self.now, budget);
                let Some((from, to)) = rules::answer_window(&due.slots, grace) else {
                    return Ok((Vec::new(), due.pending, due.check_at));
                };
                // No run since the first slot's window opened (the summaries say): no query.
                let runs = match last_run {
                    Some(latest) if latest >= from => {
                        self.tx.run_starts(agent, from, to, None).await?
                    }
                    _ => Vec::new(),
                };
                let judged = rules::answer_cron_slots(&due.slots, &runs, grace);
                Ok((judged, due.pending, due.check_at))
            }
            Cadence::Every(_) => {
                // The runs are read only when the summaries show one since, so an idle
                // expectation costs no query.
                let runs = match last_run {
                    Some(last) if last > checked => {
                        self.tx
                            .run_starts(agent, checked, last, Some(RUNS_PER_PASS))
                            .await?
                    }
                    _ => Vec::new(),
                };
                let cut_short = runs.len() == RUNS_PER_PASS;
                let slots = rules::judge_period_slots(
                    cadence, checked, grace, self.now, budget, runs, cut_short, last_run,
                );
                Ok((slots.judged, None, slots.check_at))
            }
        }
    }

    /// Each slot judged: a late answer recorded, a missed slot recorded with its incident
    /// opened; an answered one resolves `missed`.
    async fn record_slots(
        &mut self,
        expectation: &ExpectationRow,
        judged: &[Judged],
    ) -> Result<(), StoreError> {
        let agent = expectation.agent_name.as_str();
        let now = self.now;
        for &(slot, answer) in judged {
            if let Some(started) = answer {
                if rules::is_late(slot, started, self.rules.late_after) {
                    let late = self.tx.record_late(agent, slot, started, now).await?;
                    if late > 0 {
                        tracing::info!(agent, %slot, %started, "slot answered late");
                    }
                    self.watched.late += late;
                }
                if self.resolve(agent, IncidentKind::Missed).await? {
                    tracing::info!(agent, %slot, "incident resolved: missed (a run answered its slot)");
                }
                continue;
            }
            if self.known.paused_at(agent, slot) {
                tracing::debug!(agent, %slot, "slot skipped: the job was paused");
                continue;
            }
            self.watched.missed += self.tx.record_missed(agent, slot, now).await?;
            let summary = rules::missed_summary(slot, expectation.grace());
            if self.open(agent, IncidentKind::Missed, &summary).await? {
                tracing::warn!(agent, %slot, "incident opened: missed");
            }
        }
        Ok(())
    }

    /// `stale` opened or resolved (`rules::staleness`); returns when it would go stale.
    async fn judge_staleness(
        &mut self,
        expectation: &ExpectationRow,
        period: Option<TimeDelta>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let agent = expectation.agent_name.as_str();
        let staleness = rules::staleness(
            self.now,
            self.known.last_success(agent),
            expectation.created_at,
            period,
            expectation.grace(),
            self.rules.stale_periods,
        );
        match staleness {
            Staleness::Unknown => Ok(None),
            // A paused job runs nothing on purpose: not stale while paused.
            Staleness::Stale(_) if self.known.paused_at(agent, self.now) => Ok(None),
            Staleness::Stale(summary) => {
                if self.open(agent, IncidentKind::Stale, &summary).await? {
                    tracing::warn!(agent, "incident opened: stale");
                }
                // Open until a success, which a pass sees as a change of the agent's summaries.
                Ok(None)
            }
            Staleness::Fresh(stale_at) => {
                if self.resolve(agent, IncidentKind::Stale).await? {
                    tracing::info!(agent, "incident resolved: stale (a successful run)");
                }
                Ok(Some(stale_at))
            }
        }
    }
}
