//! An expectation's slots: which are due, which run answered each, and the expectation's
//! progress.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::rfc3339;
use crate::domain::{Cadence, human};

/// How early before its slot a run may start and still answer it (clocks differ).
pub const EARLY: TimeDelta = TimeDelta::seconds(60);

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
    match (cadence, judged.last()) {
        (_, None) => checked,
        (Cadence::Every(_), Some((_, Some(started)))) => *started,
        (_, Some((slot, _))) => *slot,
    }
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

/// Whether `slot` fell inside one of a job's pauses (`since` inclusive, its end exclusive; no
/// end: paused still): such a slot was skipped on purpose, never missed.
pub fn is_paused(pauses: &[(DateTime<Utc>, Option<DateTime<Utc>>)], slot: DateTime<Utc>) -> bool {
    pauses
        .iter()
        .any(|&(since, end)| since <= slot && end.is_none_or(|end| slot < end))
}

/// The `missed` incident's summary.
pub fn missed_summary(slot: DateTime<Utc>, grace: TimeDelta) -> String {
    format!(
        "no run for the slot at {} within its grace of {}",
        rfc3339(slot),
        human(grace)
    )
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

    #[test]
    fn a_slot_inside_a_pause_is_paused_and_its_end_is_not() {
        let pauses = [
            (at("2026-01-01T10:00:00Z"), Some(at("2026-01-01T12:00:00Z"))),
            (at("2026-01-02T00:00:00Z"), None),
        ];
        assert!(is_paused(&pauses, at("2026-01-01T10:00:00Z")));
        assert!(is_paused(&pauses, at("2026-01-01T11:00:00Z")));
        assert!(!is_paused(&pauses, at("2026-01-01T12:00:00Z")));
        assert!(!is_paused(&pauses, at("2026-01-01T09:59:59Z")));
        assert!(is_paused(&pauses, at("2026-03-01T00:00:00Z")));
        assert!(!is_paused(&[], at("2026-03-01T00:00:00Z")));
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
        // Staleness counts in the cron's period from its first slot not yet judged.
        assert_eq!(
            period(&hourly(), Some(at("2026-01-01T05:00:00Z"))),
            Some(TimeDelta::hours(1))
        );
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
}
