//! An expectation (`PUT /agents/{name}/expectation`) checked against every rule, and its slots.

use std::time::Duration;

use agent_sdk::cron::CronSchedule;
use agent_sdk::wire::{ExpectationRequest, ExpectationSource};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use validator::ValidationErrors;

use super::AgentName;
use super::new_run::invalid;

/// The grace of an expectation that names none.
const DEFAULT_GRACE: Duration = Duration::from_secs(5 * 60);
/// The longest grace and the longest period.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// How often a run is expected.
#[derive(Debug, Clone)]
pub enum Cadence {
    /// At each slot of a cron expression in a time zone.
    Cron(CronSchedule),
    /// At least once a period: the next run is due a period after the last one.
    Every(TimeDelta),
}

impl Cadence {
    /// The cadence stored as (cron, timezone, every_seconds).
    pub fn from_columns(
        cron: Option<&str>,
        timezone: Option<&str>,
        every_seconds: Option<i64>,
    ) -> Result<Self, String> {
        match (cron, every_seconds) {
            (Some(cron), None) => {
                let tz: Tz = timezone
                    .unwrap_or("UTC")
                    .parse()
                    .map_err(|_| format!("unknown time zone {timezone:?}"))?;
                CronSchedule::parse(cron, tz).map(Self::Cron)
            }
            (None, Some(seconds)) if seconds > 0 => Ok(Self::Every(TimeDelta::seconds(seconds))),
            _ => Err("an expectation has either a cron expression or a period".into()),
        }
    }

    /// (cron, timezone, every_seconds), as stored.
    pub fn columns(&self) -> (Option<String>, Option<String>, Option<i64>) {
        match self {
            Self::Cron(schedule) => (
                Some(schedule.expression().to_owned()),
                Some(schedule.timezone().name().to_owned()),
                None,
            ),
            Self::Every(period) => (None, None, Some(period.num_seconds())),
        }
    }

    /// The first slot after `after`; for a period, a period after `after` (the last run or
    /// the last slot judged).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron(schedule) => schedule.next_after(after),
            Self::Every(period) => after.checked_add_signed(*period),
        }
    }

    /// The period as `1h`, for a period.
    pub fn every(&self) -> Option<String> {
        match self {
            Self::Cron(_) => None,
            Self::Every(period) => Some(human(*period)),
        }
    }
}

/// `d` as `1h 30m`.
pub fn human(d: TimeDelta) -> String {
    humantime::format_duration(d.to_std().unwrap_or_default()).to_string()
}

/// An expectation that passed every rule.
#[derive(Debug, Clone)]
pub struct NewExpectation {
    pub agent_name: AgentName,
    pub cadence: Cadence,
    pub grace: TimeDelta,
    pub source: ExpectationSource,
}

impl NewExpectation {
    /// Checks `request` for `agent_name`: one of `cron` and `every`, a known time zone (with
    /// `cron` only), a period from a second to a year, a grace up to a year.
    pub fn parse(
        agent_name: AgentName,
        request: ExpectationRequest,
        source: ExpectationSource,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let mut duration = |field: &'static str, value: &str, min: Duration| {
            match humantime::parse_duration(value) {
                Ok(d) if d < min => {
                    errors.add(
                        field,
                        invalid(
                            "range",
                            format!(
                                "{field} {value:?} is shorter than {}",
                                humantime::format_duration(min)
                            ),
                        ),
                    );
                    None
                }
                Ok(d) if d > MAX_DURATION => {
                    errors.add(
                        field,
                        invalid("range", format!("{field} {value:?} is longer than a year")),
                    );
                    None
                }
                Ok(d) => Some(d),
                Err(err) => {
                    errors.add(
                        field,
                        invalid(
                            "duration",
                            format!(
                                "{field} {value:?} is not a duration like 90s, 10m, 1h or 1d: {err}"
                            ),
                        ),
                    );
                    None
                }
            }
        };
        let every = request
            .every
            .as_deref()
            .map(|v| duration("every", v, Duration::from_secs(1)));
        let grace = match request.grace.as_deref() {
            Some(v) => duration("grace", v, Duration::ZERO),
            None => Some(DEFAULT_GRACE),
        };
        let cadence = match (request.cron.as_deref(), every) {
            (Some(_), Some(_)) => {
                errors.add(
                    "every",
                    invalid("exclusive", "give either cron or every, not both".into()),
                );
                None
            }
            (None, None) => {
                errors.add(
                    "cron",
                    invalid(
                        "required",
                        "give cron (with an optional timezone) or every".into(),
                    ),
                );
                None
            }
            (None, Some(every)) => {
                if request.timezone.is_some() {
                    errors.add(
                        "timezone",
                        invalid(
                            "exclusive",
                            "timezone goes with cron, not with every".into(),
                        ),
                    );
                }
                every
                    .and_then(|d| TimeDelta::from_std(d).ok())
                    .map(Cadence::Every)
            }
            (Some(cron), None) => {
                let zone = request.timezone.as_deref().unwrap_or("UTC");
                match zone.parse::<Tz>() {
                    Err(_) => {
                        errors.add("timezone", invalid("timezone", format!("{zone:?} is not an IANA time zone (Europe/Madrid, America/New_York, UTC)")));
                        None
                    }
                    Ok(tz) => match CronSchedule::parse(cron, tz) {
                        Ok(schedule) => Some(Cadence::Cron(schedule)),
                        Err(err) => {
                            errors.add("cron", invalid("cron", format!("{cron:?}: {err}")));
                            None
                        }
                    },
                }
            }
        };
        match (cadence, grace.and_then(|g| TimeDelta::from_std(g).ok())) {
            (Some(cadence), Some(grace)) if errors.is_empty() => Ok(Self {
                agent_name,
                cadence,
                grace,
                source,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<NewExpectation, Vec<String>> {
        NewExpectation::parse(
            AgentName::parse("nightly").unwrap(),
            serde_json::from_value(json).unwrap(),
            ExpectationSource::Api,
        )
        .map_err(|errors| super::super::error_fields(&errors))
    }

    #[test]
    fn an_expectation_is_a_cron_in_a_zone_or_a_period_with_a_grace() {
        let cron = parse(
            serde_json::json!({"cron": "0 3 * * *", "timezone": "Europe/Madrid", "grace": "10m"}),
        )
        .unwrap();
        assert!(matches!(cron.cadence, Cadence::Cron(_)));
        assert_eq!(cron.grace, TimeDelta::minutes(10));
        let every = parse(serde_json::json!({"every": "1h"})).unwrap();
        assert_eq!(every.cadence.every().as_deref(), Some("1h"));
        assert_eq!(every.grace, TimeDelta::minutes(5));
        let at = "2026-12-04T10:00:00Z".parse().unwrap();
        assert_eq!(
            every.cadence.next_after(at),
            Some("2026-12-04T11:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn bad_expectations_name_each_bad_field() {
        assert_eq!(
            parse(serde_json::json!({"cron": "61 * * * *"})).unwrap_err(),
            ["cron"]
        );
        assert_eq!(
            parse(serde_json::json!({"cron": "* * * * *", "timezone": "Mars/Base"})).unwrap_err(),
            ["timezone"]
        );
        assert_eq!(
            parse(serde_json::json!({"every": "0s"})).unwrap_err(),
            ["every"]
        );
        assert_eq!(
            parse(serde_json::json!({"every": "1h", "grace": "400d"})).unwrap_err(),
            ["grace"]
        );
        assert_eq!(
            parse(serde_json::json!({"every": "soon"})).unwrap_err(),
            ["every"]
        );
        assert_eq!(parse(serde_json::json!({})).unwrap_err(), ["cron"]);
        assert_eq!(
            parse(serde_json::json!({"cron": "* * * * *", "every": "1h"})).unwrap_err(),
            ["every"]
        );
        assert_eq!(
            parse(serde_json::json!({"every": "1h", "timezone": "UTC"})).unwrap_err(),
            ["timezone"]
        );
    }
}
