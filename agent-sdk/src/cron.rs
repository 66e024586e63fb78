//! Cron expressions evaluated in an IANA time zone, correctly across DST changes.
//!
//! Candidates are found on the local wall clock (croner, on naive local times), then placed on
//! the UTC time line:
//! - a wall-clock time that occurs twice (clocks going back) fires once, at its first
//!   occurrence — unless the hour field is `*`, in which case the job follows real time and
//!   fires in both of the repeated hours, as an hourly job should;
//! - a wall-clock time that does not exist (clocks going forward) fires at the instant the
//!   wall clock would have shown it with the offset before the change (02:30 → 03:30 when
//!   02:00 jumps to 03:00), so a daily job is not lost; hour-`*` jobs skip the missing hour.
//!
//! tokio-cron-scheduler 0.15 is not used for this: it captures a time zone's UTC offset when a
//! job is created and applies that fixed offset to every later fire (src/scheduler.rs:183,
//! src/job/mod.rs:222), so fires drift by an hour after a DST change; and it polls every 500 ms.

use std::sync::Arc;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, SubsecRound, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::CronParser;

/// Run keys of scheduled runs are derived from (job, slot): two scheduler processes firing the
/// same slot produce the same key, and the collector stores the run once; a backfill of the
/// slot, asked of the collector, finds it under that key.
const RUN_KEY_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x5c0e_d01e_a6e7_4f1a_9c3b_7a11_0000_0001);

/// The run key of `job`'s run for `slot`.
pub fn run_key_of(job: &str, slot: DateTime<Utc>) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &RUN_KEY_NAMESPACE,
        format!("{job}@{}", slot.to_rfc3339()).as_bytes(),
    )
}

/// A bound on the search; an hour of per-second candidates fits.
const MAX_CANDIDATES: usize = 10_000;

/// Cheap to clone: jobs with the same expression and zone share one parsed pattern (croner's
/// takes about 5.6 KB).
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: Arc<str>,
    cron: Arc<Cron>,
    timezone: Tz,
    hour_is_wildcard: bool,
}

impl CronSchedule {
    /// `expression` has 5 fields (minute hour day month weekday) or 6 (seconds first).
    pub fn parse(expression: &str, timezone: Tz) -> Result<Self, String> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        let hour_field = match fields.len() {
            5 => fields[1],
            6 => fields[2],
            n => {
                return Err(format!(
                    "{expression:?} has {n} fields; expected 5 (minute hour day month weekday) or 6 (seconds first)"
                ));
            }
        };
        // A step over its field's every value (`*/61` minutes) would fire at its first value
        // only: croner takes it, the person who wrote it meant something else.
        let names: &[(&str, u32)] = &[
            ("second", 60),
            ("minute", 60),
            ("hour", 24),
            ("day of month", 31),
            ("month", 12),
            ("day of week", 7),
        ];
        let names = &names[6 - fields.len()..];
        for (field, (name, values)) in fields.iter().zip(names) {
            for part in field.split(',') {
                if let Some(step) = part
                    .split_once('/')
                    .and_then(|(_, s)| s.parse::<u32>().ok())
                    && step > *values
                {
                    return Err(format!(
                        "{expression:?}: the step /{step} of the {name} field is larger than its {values} values"
                    ));
                }
            }
        }
        let cron = CronParser::new()
            .parse(expression)
            .map_err(|e| format!("invalid cron expression {expression:?}: {e}"))?;
        Ok(Self {
            expression: expression.into(),
            cron: Arc::new(cron),
            timezone,
            hour_is_wildcard: hour_field == "*",
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first fire strictly after `after`: an instant of the expression in its zone, in
    /// whole seconds, whatever fraction of a second `after` carries (slots are the same on every
    /// process that computes them, so their run keys are too).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // No slot lies between a whole second and the fraction after it.
        let after = after.trunc_subsecs(0);
        let local_after = after.with_timezone(&self.timezone).naive_local();
        // Near a transition, an instant after `after` can belong to an earlier wall-clock time
        // (the repeated hour comes round again; a time moved past a gap): look back by the
        // size of any change within three hours, which is zero nearly always.
        let offset = |t: DateTime<Utc>| {
            t.with_timezone(&self.timezone)
                .offset()
                .fix()
                .local_minus_utc()
        };
        let window = TimeDelta::hours(3);
        let shift = (offset(after) - offset(after - window))
            .abs()
            .max((offset(after) - offset(after + window)).abs());
        let mut cursor = local_after - TimeDelta::seconds(i64::from(shift));
        let mut best: Option<DateTime<Utc>> = None;
        for _ in 0..MAX_CANDIDATES {
            let candidate = self.next_wall_clock(cursor)?;
            let instants = self.instants(candidate);
            // First occurrences grow with the wall clock: once past `best`, nothing later wins.
            if let (Some(best), Some(first)) = (best, instants.first())
                && *first > best
            {
                break;
            }
            for instant in instants {
                if instant > after && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
            cursor = candidate;
        }
        best
    }

    /// The latest fire at or before `at` (looking back up to about two years): the slot a
    /// Kubernetes CronJob's pod stands for (`scheduler run JOB --slot latest`). The same
    /// instants as [`CronSchedule::next_after`], so the same run keys as `serve`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = at.trunc_subsecs(0);
        // A window doubled until it holds a fire: a handful of fires walked, however sparse.
        let mut window = TimeDelta::minutes(1);
        while window <= TimeDelta::days(800) {
            let mut cursor = at - window;
            let mut latest = None;
            while let Some(fire) = self.next_after(cursor).filter(|fire| *fire <= at) {
                latest = Some(fire);
                cursor = fire;
            }
            if latest.is_some() {
                return latest;
            }
            window = window * 2;
        }
        None
    }

    /// The next `n` fires after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::with_capacity(n);
        let mut cursor = after;
        while fires.len() < n {
            let Some(next) = self.next_after(cursor) else {
                break;
            };
            fires.push(next);
            cursor = next;
        }
        fires
    }

    /// The next wall-clock time the pattern matches, after `cursor` (croner on naive times).
    fn next_wall_clock(&self, cursor: NaiveDateTime) -> Option<NaiveDateTime> {
        self.cron
            .find_next_occurrence(&Utc.from_utc_datetime(&cursor), false)
            .ok()
            .map(|t| t.naive_utc())
    }

    /// The instants at which wall-clock time `local` fires.
    fn instants(&self, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.timezone.from_local_datetime(&local) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) if self.hour_is_wildcard => {
                vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
            }
            LocalResult::Ambiguous(first, _) => vec![first.with_timezone(&Utc)],
            LocalResult::None if self.hour_is_wildcard => vec![],
            LocalResult::None => {
                // The offset in force just before the gap places the missing time after it.
                let before = local - TimeDelta::hours(3);
                match self.timezone.from_local_datetime(&before) {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                        let offset = t.offset().fix();
                        offset
                            .from_local_datetime(&local)
                            .single()
                            .map(|t| vec![t.with_timezone(&Utc)])
                            .unwrap_or_default()
                    }
                    LocalResult::None => vec![],
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn madrid(expression: &str) -> CronSchedule {
        CronSchedule::parse(expression, chrono_tz::Europe::Madrid).unwrap()
    }

    fn fires(schedule: &CronSchedule, after: &str, n: usize) -> Vec<String> {
        schedule
            .upcoming(utc(after), n)
            .into_iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect()
    }

    #[test]
    fn a_step_larger_than_its_field_is_refused() {
        let utc = "UTC".parse().unwrap();
        let refused = CronSchedule::parse("*/61 * * * *", utc).unwrap_err();
        assert!(
            refused.contains("step /61 of the minute field"),
            "{refused}"
        );
        assert!(CronSchedule::parse("0 */25 * * *", utc).is_err());
        assert!(CronSchedule::parse("*/61 * * * * *", utc).is_err());
        assert!(CronSchedule::parse("*/60 * * * *", utc).is_ok());
        assert!(CronSchedule::parse("0-30/15 */6 * * 1-5", utc).is_ok());
    }

    #[test]
    fn the_latest_fire_is_the_one_next_after_would_give() {
        let latest = |expression: &str, at: &str| {
            madrid(expression)
                .latest_at_or_before(utc(at))
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        };
        // At the slot itself, and a moment after it.
        assert_eq!(
            latest("*/5 * * * *", "2026-02-19T10:05:00Z").unwrap(),
            "2026-02-19T10:05:00Z"
        );
        assert_eq!(
            latest("*/5 * * * *", "2026-02-19T10:09:59.9Z").unwrap(),
            "2026-02-19T10:05:00Z"
        );
        // Across the spring-forward gap: 02:30 did not exist on 2026-03-29, 03:30 CEST stood in.
        assert_eq!(
            latest("30 2 * * *", "2026-03-29T12:00:00Z").unwrap(),
            "2026-03-29T01:30:00Z"
        );
        // Sparse: once a year.
        assert_eq!(
            latest("0 0 1 1 *", "2026-12-02T12:00:00Z").unwrap(),
            "2025-12-31T23:00:00Z"
        );
        // Every second.
        assert_eq!(
            latest("* * * * * *", "2026-02-19T10:00:07.5Z").unwrap(),
            "2026-02-19T10:00:07Z"
        );
    }

    #[test]
    fn daily_0230_madrid_on_the_spring_forward_day_fires_once_after_the_gap() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
        assert_eq!(
            fires(&madrid("30 2 * * *"), "2026-03-27T12:00:00Z", 4),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:30:00Z", // 03:30 CEST, once, right after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
                "2026-03-31T00:30:00Z",
            ]
        );
    }

    #[test]
    fn daily_0230_madrid_on_the_fall_back_day_fires_once() {
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
        assert_eq!(
            fires(&madrid("30 2 * * *"), "2026-10-23T12:00:00Z", 4),
            [
                "2026-10-24T00:30:00Z", // 02:30 CEST
                "2026-10-25T00:30:00Z", // the first 02:30 (CEST) only
                "2026-10-26T01:30:00Z", // 02:30 CET
                "2026-10-27T01:30:00Z",
            ]
        );
    }

    #[test]
    fn hourly_job_fires_every_real_hour_across_the_repeated_hour() {
        assert_eq!(
            fires(&madrid("0 * * * *"), "2026-10-24T22:30:00Z", 5),
            [
                "2026-10-24T23:00:00Z", // 01:00 CEST
                "2026-10-25T00:00:00Z", // 02:00 CEST
                "2026-10-25T01:00:00Z", // 02:00 CET, the repeated hour
                "2026-10-25T02:00:00Z", // 03:00 CET
                "2026-10-25T03:00:00Z",
            ]
        );
    }

    #[test]
    fn hourly_job_skips_the_missing_hour_without_firing_twice() {
        assert_eq!(
            fires(&madrid("0 * * * *"), "2026-03-28T23:30:00Z", 4),
            [
                "2026-03-29T00:00:00Z", // 01:00 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST (02:00 does not exist)
                "2026-03-29T02:00:00Z", // 04:00 CEST
                "2026-03-29T03:00:00Z",
            ]
        );
    }

    #[test]
    fn six_fields_have_seconds_and_utc_is_plain() {
        let every_second = CronSchedule::parse("* * * * * *", chrono_tz::UTC).unwrap();
        assert_eq!(
            fires(&every_second, "2026-01-01T00:00:00Z", 2),
            ["2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z"]
        );
        let five = CronSchedule::parse("*/15 * * * *", chrono_tz::UTC).unwrap();
        assert_eq!(
            fires(&five, "2026-01-01T00:07:00Z", 2),
            ["2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z"]
        );
    }

    #[test]
    fn slots_are_whole_seconds_whatever_the_fraction_of_the_start() {
        let every_second = CronSchedule::parse("* * * * * *", chrono_tz::UTC).unwrap();
        let start = utc("2026-01-01T07:27:06.470354Z");
        assert_eq!(
            every_second.upcoming(start, 2),
            [utc("2026-01-01T07:27:07Z"), utc("2026-01-01T07:27:08Z")]
        );
        let every_ten = CronSchedule::parse("*/10 * * * * *", chrono_tz::UTC).unwrap();
        assert_eq!(
            every_ten.next_after(start),
            Some(utc("2026-01-01T07:27:10Z"))
        );
        let daily = madrid("30 2 * * *");
        let slot = daily.next_after(utc("2026-03-27T12:00:00.999Z")).unwrap();
        assert_eq!(slot, utc("2026-03-28T01:30:00Z"));
        assert_eq!(slot.timestamp_subsec_nanos(), 0);
    }

    #[test]
    fn every_second_across_a_transition_stays_one_second_apart() {
        let every_second = madrid("* * * * * *");
        let fires = every_second.upcoming(utc("2026-10-25T00:59:58Z"), 4);
        let gaps: Vec<i64> = fires
            .windows(2)
            .map(|w| (w[1] - w[0]).num_seconds())
            .collect();
        assert_eq!(gaps, [1, 1, 1], "{fires:?}");
    }

    #[test]
    fn bad_expressions_say_why() {
        assert!(
            CronSchedule::parse("* * *", chrono_tz::UTC)
                .unwrap_err()
                .contains("3 fields")
        );
        assert!(
            CronSchedule::parse("61 * * * *", chrono_tz::UTC)
                .unwrap_err()
                .contains("invalid cron")
        );
        assert!(
            CronSchedule::parse("0 0 31 2 *", chrono_tz::UTC)
                .unwrap()
                .next_after(utc("2026-01-01T00:00:00Z"))
                .is_none()
        );
    }
}
