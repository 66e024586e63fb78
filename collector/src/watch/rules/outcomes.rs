//! What an agent's runs say: whether it went stale, whether its latest runs are failing, whether
//! its latest run was slow.

use agent_sdk::wire::RunStatus;
use chrono::{DateTime, TimeDelta, Utc};

use super::{SLOW_HISTORY, SLOW_MIN_HISTORY, WatchRules, rfc3339};
use crate::domain::human;
use crate::store::RecentRun;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
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
