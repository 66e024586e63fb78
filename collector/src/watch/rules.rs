//! The monitoring rules, as pure functions of rows and `now` returning verdicts: which slots of
//! an expectation are due and which run answered each (on time, late or missed), when an
//! agent goes stale, when its runs are failing or slow. No database: the pass (`pass.rs`) reads
//! the rows, asks these, and writes what they say.

use std::time::Duration;

use agent_sdk::wire::RunStatus;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use crate::domain::{Cadence, human};
use crate::store::RecentRun;

/// How early before its slot a run may start and still answer it (clocks differ).
pub const EARLY: TimeDelta = TimeDelta::seconds(60);

/// How many of an agent's latest successful runs `slow` compares a run with.
pub const SLOW_HISTORY: u64 = 20;
/// `slow` needs at least this many of them.
const SLOW_MIN_HISTORY: usize = 5;

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

/// A slot judged: the start of the run that answered it, or `None`: missed.
pub type Judged = (DateTime<Utc>, Option<DateTime<Utc>>);

/// A cron's slots past their grace at `now`, from the first after `checked`, at most `budget`.
#[derive(Debug, PartialEq, Eq)]
pub struct DueSlots {
    pub slots: Vec<DateTime<Utc>>,
    /// The first slot left for a later pass.
    pub pending: Option<DateTime<Utc>>,
    /// When a pass has to judge again without a run arriving.
    pub check_at: Option<DateTime<Utc>>,
}

pub fn due_cron_slots(
    cadence: &Cadence,
    checked: DateTime<Utc>,
    grace: TimeDelta,
    now: DateTime<Utc>,
    budget: usize,
) -> DueSlots {
    let mut due = DueSlots {
        slots: Vec::new(),
        pending: None,
        check_at: None,
    };
    let mut after = checked;
    while let Some(slot) = cadence.next_after(after) {
        if slot + grace > now || due.slots.len() == budget {
            due.pending = Some(slot);
            due.check_at = Some(Ord::max(slot + grace, now));
            break;
        }
        due.slots.push(slot);
        after = slot;
    }
    due
}

/// The runs that can answer `slots` started from the first's window (it opens [`EARLY`]) to
/// the last one's grace.
pub fn answer_window(
    slots: &[DateTime<Utc>],
    grace: TimeDelta,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    Some((*slots.first()? - EARLY, *slots.last()? + grace))
}

/// Each of a cron's `slots` with the first run of `runs` (starts, in order) in its window.
pub fn answer_cron_slots(
    slots: &[DateTime<Utc>],
    runs: &[DateTime<Utc>],
    grace: TimeDelta,
) -> Vec<Judged> {
    slots
        .iter()
        .map(|&slot| {
            let from = runs.partition_point(|at| *at < slot - EARLY);
            (
                slot,
                runs.get(from).copied().filter(|at| *at <= slot + grace),
            )
        })
        .collect()
}

/// A period's slots judged, and when a pass has to judge again without a run arriving.
#[derive(Debug, PartialEq, Eq)]
pub struct PeriodSlots {
    pub judged: Vec<Judged>,
    pub check_at: Option<DateTime<Utc>>,
}

/// A period's slot is due a period after the run that answered the previous one (or the slot
/// last missed). Each run since `checked`, in order, answers the first slot whose grace it
/// falls in; slots whose grace passed before the next run are missed, even when no pass saw
/// them pass (the collector was down). `runs` are the starts read, `cut_short` when the read
/// stopped at its limit (the slots after the last one wait for the next pass); `last_run` is
/// the summaries' latest run, which counts even when its row is gone (retention).
#[allow(clippy::too_many_arguments)]
pub fn judge_period_slots(
    cadence: &Cadence,
    checked: DateTime<Utc>,
    grace: TimeDelta,
    now: DateTime<Utc>,
    budget: usize,
    mut runs: Vec<DateTime<Utc>>,
    cut_short: bool,
    last_run: Option<DateTime<Utc>>,
) -> PeriodSlots {
    if let Some(last) = last_run
        && !cut_short
        && runs.last().is_none_or(|at| *at < last)
    {
        runs.push(last);
    }
    let mut runs = runs.into_iter().filter(|at| *at > checked).peekable();
    let mut anchor = checked;
    let mut judged = Vec::new();
    let mut check_at = None;
    while judged.len() < budget {
        let Some(due) = cadence.next_after(anchor) else {
            break;
        };
        match runs.peek().copied() {
            Some(at) if at <= due + grace => {
                judged.push((due, Some(at)));
                anchor = at;
                runs.next();
            }
            None if cut_short => {
                check_at = Some(now);
                break;
            }
            _ if due + grace <= now => {
                judged.push((due, None));
                anchor = due;
            }
            _ => {
                check_at = Some(due + grace);
                break;
            }
        }
    }
    if judged.len() == budget {
        check_at = Some(now);
    }
    PeriodSlots { judged, check_at }
}

/// An expectation's progress after `judged`: a cron's is its last slot judged; a period's,
/// the run that reset it (or the slot last missed).
pub fn progress(cadence: &Cadence, checked: DateTime<Utc>, judged: &[Judged]) -> DateTime<Utc> {
    judged
        .iter()
        .fold(checked, |_, (slot, answer)| match (cadence, answer) {
            (Cadence::Every(_), Some(started)) => *started,
            _ => *slot,
        })
}

/// The period `stale` counts in: a period's own; a cron's, from its first slot not yet judged
/// (`pending`) to the slot after (`None`: a cron that no longer fires).
pub fn period(cadence: &Cadence, pending: Option<DateTime<Utc>>) -> Option<TimeDelta> {
    match cadence {
        Cadence::Every(period) => Some(*period),
        Cadence::Cron(schedule) => {
            pending.and_then(|slot| schedule.next_after(slot).map(|next| next - slot))
        }
    }
}

/// Whether a run that started at `started` answered `slot` late.
pub fn is_late(slot: DateTime<Utc>, started: DateTime<Utc>, late_after: Duration) -> bool {
    started > slot + TimeDelta::from_std(late_after).unwrap_or(TimeDelta::MAX)
}

/// The `missed` incident's summary.
pub fn missed_summary(slot: DateTime<Utc>, grace: TimeDelta) -> String {
    format!(
        "no run for the slot at {} within its grace of {}",
        rfc3339(slot),
        human(grace)
    )
}

/// An expected agent's freshness at `now`.
#[derive(Debug, PartialEq, Eq)]
pub enum Staleness {
    /// Its cadence has no period (a cron that no longer fires): nothing to judge.
    Unknown,
    /// No successful run for too long: the `stale` incident's summary.
    Stale(String),
    /// Fresh; it goes stale just after this, without a success before.
    Fresh(DateTime<Utc>),
}

/// `stale`: no successful run of an expected agent for `stale_periods` periods and its grace,
/// counted from its last success or, without one, from when it was first expected.
pub fn staleness(
    now: DateTime<Utc>,
    last_success: Option<DateTime<Utc>>,
    expected_since: DateTime<Utc>,
    period: Option<TimeDelta>,
    grace: TimeDelta,
    stale_periods: u32,
) -> Staleness {
    let Some(period) = period else {
        return Staleness::Unknown;
    };
    let since = last_success.unwrap_or(expected_since);
    let allowed = period * i32::try_from(stale_periods).unwrap_or(i32::MAX) + grace;
    if now - since <= allowed {
        return Staleness::Fresh(since + allowed + TimeDelta::microseconds(1));
    }
    Staleness::Stale(match last_success {
        Some(at) => format!(
            "no successful run since {} ({stale_periods} periods of {})",
            rfc3339(at),
            human(period)
        ),
        None => format!(
            "no successful run since it was first expected at {} ({stale_periods} periods of {})",
            rfc3339(since),
            human(period)
        ),
    })
}

/// `failing`: the latest `failing_after` of `recent` (newest first) all failed; the incident's
/// summary, with the latest one's first line of error.
pub fn failing(recent: &[RecentRun], failing_after: u32) -> Option<String> {
    let wanted = failing_after as usize;
    let last_n = &recent[..recent.len().min(wanted)];
    let all_failed = last_n.len() == wanted
        && last_n
            .iter()
            .all(|r| r.status == RunStatus::Failed.as_str());
    let last = recent.first().filter(|_| all_failed)?;
    let error = last
        .error_message
        .as_deref()
        .and_then(|e| e.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("no error message");
    Some(if failing_after == 1 {
        format!("the run at {} failed: {error}", rfc3339(last.started_at))
    } else {
        format!(
            "the last {failing_after} runs failed, the latest at {}: {error}",
            rfc3339(last.started_at)
        )
    })
}

/// What `slow` makes of an agent's latest run.
#[derive(Debug, PartialEq, Eq)]
pub enum Slowness {
    /// Too few successful runs before it to tell.
    Unknown,
    /// Of usual length.
    Usual,
    /// Slow: the incident's summary, how long it took and the median it was held to.
    Slow {
        summary: String,
        took_ms: i64,
        median_ms: i64,
    },
}

/// `slow`: the latest of `recent` (newest first) took more than `rules.slow_factor` times the
/// median of its previous successful runs (at least five of the last twenty) and at least
/// `rules.slow_min`.
pub fn slowness(recent: &[RecentRun], rules: &WatchRules) -> Slowness {
    let Some((latest, earlier)) = recent.split_first() else {
        return Slowness::Unknown;
    };
    let mut history: Vec<i64> = earlier
        .iter()
        .filter(|r| r.status == RunStatus::Success.as_str())
        .filter_map(|r| r.duration_ms)
        .take(SLOW_HISTORY as usize)
        .collect();
    if history.len() < SLOW_MIN_HISTORY {
        return Slowness::Unknown;
    }
    history.sort_unstable();
    let median = history[history.len() / 2];
    let took = latest.duration_ms.unwrap_or(0);
    if took > median.saturating_mul(i64::from(rules.slow_factor)) && took >= rules.slow_min_ms() {
        Slowness::Slow {
            summary: format!(
                "the run at {} took {}, more than {}x the median {} of its last {} successful runs",
                rfc3339(latest.started_at),
                human(TimeDelta::milliseconds(took)),
                rules.slow_factor,
                human(TimeDelta::milliseconds(median)),
                history.len()
            ),
            took_ms: took,
            median_ms: median,
        }
    } else {
        Slowness::Usual
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn hourly() -> Cadence {
        Cadence::from_columns(Some("0 * * * *"), Some("UTC"), None).unwrap()
    }

    fn every(minutes: i64) -> Cadence {
        Cadence::from_columns(None, None, Some(minutes * 60)).unwrap()
    }

    fn run(status: &str, ms: i64, started: &str) -> RecentRun {
        RecentRun {
            status: status.into(),
            error_message: (status == "failed").then(|| "\nboom\nat line 3".into()),
            duration_ms: Some(ms),
            started_at: at(started),
        }
    }

    #[test]
    fn cron_slots_are_due_once_their_grace_has_passed_and_at_most_a_budget() {
        let grace = TimeDelta::minutes(5);
        let due = due_cron_slots(
            &hourly(),
            at("2026-01-01T00:00:00Z"),
            grace,
            at("2026-01-01T03:04:00Z"),
            10,
        );
        assert_eq!(
            due.slots,
            [at("2026-01-01T01:00:00Z"), at("2026-01-01T02:00:00Z")]
        );
        // 03:00 is still within its grace: pending, judged at 03:05.
        assert_eq!(due.pending, Some(at("2026-01-01T03:00:00Z")));
        assert_eq!(due.check_at, Some(at("2026-01-01T03:05:00Z")));

        let capped = due_cron_slots(
            &hourly(),
            at("2026-01-01T00:00:00Z"),
            grace,
            at("2026-01-01T03:04:00Z"),
            1,
        );
        assert_eq!(capped.slots, [at("2026-01-01T01:00:00Z")]);
        assert_eq!(capped.pending, Some(at("2026-01-01T02:00:00Z")));
        // Over budget: due again at once.
        assert_eq!(capped.check_at, Some(at("2026-01-01T03:04:00Z")));
    }

    #[test]
    fn a_cron_slot_is_answered_by_the_first_run_in_its_window() {
        let grace = TimeDelta::minutes(5);
        let slots = [at("2026-01-01T01:00:00Z"), at("2026-01-01T02:00:00Z")];
        assert_eq!(
            answer_window(&slots, grace),
            Some((at("2026-01-01T00:59:00Z"), at("2026-01-01T02:05:00Z")))
        );
        // A minute early answers 01:00; nothing within 02:00's grace (02:06 is too late).
        let runs = [at("2026-01-01T00:59:30Z"), at("2026-01-01T02:06:00Z")];
        assert_eq!(
            answer_cron_slots(&slots, &runs, grace),
            [(slots[0], Some(runs[0])), (slots[1], None)]
        );
        assert_eq!(
            progress(&hourly(), at("2026-01-01T00:00:00Z"), &[]),
            at("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            progress(
                &hourly(),
                at("2026-01-01T00:00:00Z"),
                &answer_cron_slots(&slots, &runs, grace)
            ),
            slots[1]
        );
    }

    #[test]
    fn a_period_restarts_at_each_run_and_misses_the_slots_no_run_answered() {
        let grace = TimeDelta::minutes(1);
        let checked = at("2026-01-01T00:00:00Z");
        // Every 10 minutes: a run at 00:09 answers 00:10; then nothing until 00:40, so
        // 00:19 is missed and 00:29 too; 00:39 + 1 min grace is past at 00:41.
        let judged = judge_period_slots(
            &every(10),
            checked,
            grace,
            at("2026-01-01T00:41:00Z"),
            100,
            vec![at("2026-01-01T00:09:00Z")],
            false,
            Some(at("2026-01-01T00:09:00Z")),
        );
        assert_eq!(
            judged.judged,
            [
                (at("2026-01-01T00:10:00Z"), Some(at("2026-01-01T00:09:00Z"))),
                (at("2026-01-01T00:19:00Z"), None),
                (at("2026-01-01T00:29:00Z"), None),
                (at("2026-01-01T00:39:00Z"), None),
            ]
        );
        assert_eq!(judged.check_at, Some(at("2026-01-01T00:50:00Z")));
        assert_eq!(
            progress(&every(10), checked, &judged.judged[..1]),
            at("2026-01-01T00:09:00Z")
        );
        // The summaries' latest run counts when no row was read (retention took it).
        let from_summary = judge_period_slots(
            &every(10),
            checked,
            grace,
            at("2026-01-01T00:12:00Z"),
            100,
            Vec::new(),
            false,
            Some(at("2026-01-01T00:05:00Z")),
        );
        assert_eq!(
            from_summary.judged,
            [(at("2026-01-01T00:10:00Z"), Some(at("2026-01-01T00:05:00Z")))]
        );
        // Cut short: the slots after the last run read wait for the next pass.
        let cut = judge_period_slots(
            &every(10),
            checked,
            grace,
            at("2026-01-01T01:00:00Z"),
            100,
            vec![at("2026-01-01T00:05:00Z")],
            true,
            Some(at("2026-01-01T00:55:00Z")),
        );
        assert_eq!(cut.judged.len(), 1);
        assert_eq!(cut.check_at, Some(at("2026-01-01T01:00:00Z")));
    }

    #[test]
    fn a_slot_is_late_past_late_after_and_its_summary_names_it() {
        let slot = at("2026-01-01T01:00:00Z");
        let late_after = Duration::from_secs(60);
        assert!(!is_late(slot, at("2026-01-01T01:01:00Z"), late_after));
        assert!(is_late(slot, at("2026-01-01T01:01:01Z"), late_after));
        assert_eq!(
            missed_summary(slot, TimeDelta::minutes(5)),
            "no run for the slot at 2026-01-01T01:00:00Z within its grace of 5m"
        );
    }

    #[test]
    fn an_agent_goes_stale_after_its_periods_and_grace_without_a_success() {
        let since = at("2026-01-01T00:00:00Z");
        let (period, grace) = (Some(TimeDelta::hours(1)), TimeDelta::minutes(5));
        let fresh = staleness(
            at("2026-01-01T03:05:00Z"),
            Some(since),
            since,
            period,
            grace,
            3,
        );
        assert_eq!(
            fresh,
            Staleness::Fresh(at("2026-01-01T03:05:00Z") + TimeDelta::microseconds(1))
        );
        let Staleness::Stale(summary) =
            staleness(at("2026-01-01T03:06:00Z"), None, since, period, grace, 3)
        else {
            panic!("not stale");
        };
        assert!(summary.contains("since it was first expected at 2026-01-01T00:00:00Z"));
        assert_eq!(
            staleness(at("2026-01-09T00:00:00Z"), None, since, None, grace, 3),
            Staleness::Unknown
        );
        assert_eq!(period_of_hourly(), Some(TimeDelta::hours(1)));
    }

    fn period_of_hourly() -> Option<TimeDelta> {
        period(&hourly(), Some(at("2026-01-01T05:00:00Z")))
    }

    #[test]
    fn failing_needs_the_latest_runs_all_failed_and_quotes_the_first_line_of_error() {
        let failed = run("failed", 10, "2026-01-01T02:00:00Z");
        let ok = run("success", 10, "2026-01-01T01:00:00Z");
        assert_eq!(
            failing(std::slice::from_ref(&failed), 1).as_deref(),
            Some("the run at 2026-01-01T02:00:00Z failed: boom")
        );
        assert_eq!(failing(&[failed.clone(), ok.clone()], 2), None);
        assert_eq!(failing(std::slice::from_ref(&failed), 2), None);
        assert!(
            failing(&[failed.clone(), failed], 2)
                .unwrap()
                .starts_with("the last 2 runs failed")
        );
        assert_eq!(failing(&[ok], 1), None);
    }

    #[test]
    fn slow_is_held_to_the_median_of_five_successes_and_a_floor() {
        let rules = WatchRules::default();
        let history: Vec<RecentRun> = (0..5)
            .map(|i| run("success", 30_000 + i, "2026-01-01T01:00:00Z"))
            .collect();
        let with = |latest_ms: i64, earlier: &[RecentRun]| {
            let mut runs = vec![run("success", latest_ms, "2026-01-01T02:00:00Z")];
            runs.extend_from_slice(earlier);
            slowness(&runs, &rules)
        };
        assert!(matches!(
            with(100_000, &history),
            Slowness::Slow {
                took_ms: 100_000,
                median_ms: 30_002,
                ..
            }
        ));
        assert_eq!(with(90_000, &history), Slowness::Usual);
        assert_eq!(with(100_000, &history[..4]), Slowness::Unknown);
        // Under the floor (60 s), however many times the median.
        let quick: Vec<RecentRun> = (0..5)
            .map(|_| run("success", 100, "2026-01-01T01:00:00Z"))
            .collect();
        assert_eq!(with(50_000, &quick), Slowness::Usual);
        assert_eq!(slowness(&[], &rules), Slowness::Unknown);
    }
}
