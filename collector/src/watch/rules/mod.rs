//! The monitoring rules, as pure functions of rows and `now` returning verdicts: which slots of
//! an expectation are due and which run answered each, on time, late or missed (`answers.rs`);
//! when an agent goes stale, when its runs are failing or slow (`outcomes.rs`). No database:
//! the pass (`pass.rs`) reads the rows, asks these, and writes what they say.

mod answers;
mod outcomes;

pub use answers::{
    DueSlots, EARLY, Judged, PeriodSlots, answer_cron_slots, answer_window, due_cron_slots,
    is_late, is_paused, judge_period_slots, missed_summary, period, progress,
};
pub use outcomes::{Slowness, Staleness, failing, slowness, staleness};

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// How many of an agent's latest successful runs `slow` compares a run with.
pub const SLOW_HISTORY: u64 = 20;
/// `slow` needs at least this many of them.
pub(super) const SLOW_MIN_HISTORY: usize = 5;

/// What the rules are told (the collector's `INCIDENT_*`, `SLOT_LATE_AFTER`, `WATCH_EVERY`).
#[derive(Debug, Clone, Copy)]
pub struct WatchRules {
    /// `failing` opens when this many of an agent's latest runs failed (1: every failure).
    pub failing_after: u32,
    /// `stale` opens when an expected agent has had no successful run for this many periods.
    pub stale_periods: u32,
    /// `slow` opens when a run takes more than this many times the median of the agent's
    /// last 20 successful runs...
    pub slow_factor: u32,
    /// ...and at least this long.
    pub slow_min: Duration,
    /// A slot is late when the run that answers it started more than this after it (and
    /// within the grace: later, the slot is missed).
    pub late_after: Duration,
    /// How often the collector runs a pass (with the overdue check, alerts and retention).
    pub every: Duration,
}

impl Default for WatchRules {
    fn default() -> Self {
        Self {
            failing_after: 1,
            stale_periods: 3,
            slow_factor: 3,
            slow_min: Duration::from_secs(60),
            late_after: Duration::from_secs(60),
            every: Duration::from_secs(10),
        }
    }
}

impl WatchRules {
    pub fn slow_min_ms(&self) -> i64 {
        i64::try_from(self.slow_min.as_millis()).unwrap_or(i64::MAX)
    }

    /// How many of an agent's latest runs `failing` and `slow` read: its latest
    /// `failing_after`, and twice the history `slow` needs, for twenty successes.
    pub fn recent_runs(&self) -> u64 {
        Ord::max(u64::from(self.failing_after), SLOW_HISTORY * 2)
    }
}

pub(super) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
