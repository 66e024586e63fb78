//! The report a finished run sends to `POST /metrics`, and the rules it must meet.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use validator::{Validate, ValidationError, ValidationErrors};

use super::limits::{
    AGENT_NAME_MAX_CHARS, HOST_MAX_CHARS, MAX_METRICS_PER_RUN, METRIC_NAME_MAX_CHARS,
    NUMBER_MAX_CHARS,
};
use super::{MetricValue, Metrics};

/// One finished run of an agent, as posted to `POST /metrics`.
///
/// Compatible with the original design's curl example: only `agent_name`, `started_at` and
/// `finished_at` are required. [`RunReport::check`] applies every rule that needs no clock;
/// the collector adds the time rules: `finished_at` not before `started_at`, and no timestamp
/// more than a day in the future. A number must be finite as a double, at most 64 characters
/// and 1000 decimal places.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunReport {
    #[validate(custom(function = "validate_agent_name"))]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")
    )]
    pub agent_name: String,
    /// Checked by [`validate_metrics`] in [`RunReport::check`], not by the derive: validator
    /// copies a field's value into its error, which a metrics map must not cost.
    #[serde(default)]
    pub metrics: Metrics,
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    #[serde(deserialize_with = "super::rfc3339::required")]
    pub started_at: DateTime<Utc>,
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    #[serde(deserialize_with = "super::rfc3339::required")]
    pub finished_at: DateTime<Utc>,
    /// `null` for a successful run; the error message of a failed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(custom(function = "validate_no_nul"))]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\x00]*$"))]
    pub error: Option<String>,
    /// Idempotency key: a report with a key the collector has seen is stored only once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        )
    )]
    pub run_key: Option<Uuid>,
    /// What started the run; `api` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<RunTrigger>,
    /// The cron slot this run belongs to, for scheduled runs.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::rfc3339::optional"
    )]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The machine that ran the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(custom(function = "validate_host"))]
    #[cfg_attr(feature = "openapi", schema(max_length = 255, pattern = r"^[^\x00]*$"))]
    pub host: Option<String>,
    /// `true` when an operator cancelled the run (`POST /runs/{id}/cancel`): it is stored as
    /// `cancelled`, not `failed`, and `error` (required then) says who cancelled it and why.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
}

impl RunReport {
    /// Every rule that needs no clock, each failure keyed by its field.
    pub fn check(&self) -> Result<(), ValidationErrors> {
        let mut errors = self.validate().err().unwrap_or_default();
        if let Err(error) = validate_metrics(&self.metrics) {
            errors.add("metrics", error);
        }
        if self.cancelled && self.error.is_none() {
            errors.add(
                "error",
                invalid(
                    "required",
                    "a cancelled run must say who cancelled it and why".into(),
                ),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub fn status(&self) -> RunStatus {
        match (&self.error, self.cancelled) {
            (None, _) => RunStatus::Success,
            (Some(_), true) => RunStatus::Cancelled,
            (Some(_), false) => RunStatus::Failed,
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    /// Fired by a cron schedule.
    Schedule,
    /// Started by hand (`scheduler run`, the status page's button).
    Manual,
    /// Pushed by another client (curl, a script).
    Api,
    /// A past slot run again on an operator's request (`POST /jobs/{job}/backfill`).
    Backfill,
}

impl RunTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Manual => "manual",
            Self::Api => "api",
            Self::Backfill => "backfill",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "schedule" => Some(Self::Schedule),
            "manual" => Some(Self::Manual),
            "api" => Some(Self::Api),
            "backfill" => Some(Self::Backfill),
            _ => None,
        }
    }
}

/// The state of a run as stored in `agent_runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Success,
    Failed,
    /// Cancelled by an operator (`POST /runs/{id}/cancel`): counted in `run_count`, neither a
    /// success nor a failure.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "running" => Some(Self::Running),
            "success" => Some(Self::Success),
            "failed" => Some(Self::Failed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

fn invalid(code: &'static str, message: String) -> ValidationError {
    ValidationError::new(code).with_message(Cow::Owned(message))
}

/// An agent name: 1–100 characters of `[A-Za-z0-9_.-]`.
pub fn validate_agent_name(name: &str) -> Result<(), ValidationError> {
    let chars = name.chars().count();
    if chars == 0 || chars > AGENT_NAME_MAX_CHARS {
        return Err(invalid(
            "length",
            format!("must be 1 to {AGENT_NAME_MAX_CHARS} characters long, got {chars}"),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(invalid(
            "charset",
            format!("may contain only letters, digits, `_`, `.` and `-`; found {bad:?}"),
        ));
    }
    Ok(())
}

/// A metric name: 1–200 characters, no control characters.
pub fn validate_metric_name(name: &str) -> Result<(), ValidationError> {
    let chars = name.chars().count();
    if chars == 0 || chars > METRIC_NAME_MAX_CHARS {
        return Err(invalid(
            "length",
            format!(
                "metric names must be 1 to {METRIC_NAME_MAX_CHARS} characters long, got {chars}"
            ),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "charset",
            "metric names may not contain control characters".to_owned(),
        ));
    }
    Ok(())
}

/// At most [`MAX_METRICS_PER_RUN`] metrics, each with a valid name and a storable value.
pub fn validate_metrics(metrics: &Metrics) -> Result<(), ValidationError> {
    if metrics.len() > MAX_METRICS_PER_RUN {
        return Err(invalid(
            "too_many",
            format!(
                "at most {MAX_METRICS_PER_RUN} metrics per run, got {}",
                metrics.len()
            ),
        ));
    }
    for (name, value) in metrics {
        let naming = |e: ValidationError| {
            let mut e = e;
            e.add_param(Cow::Borrowed("metric"), name);
            e
        };
        validate_metric_name(name).map_err(naming)?;
        match value {
            MetricValue::Number(n) => validate_number(name, n.as_str()).map_err(naming)?,
            MetricValue::Text(text) if text.contains('\0') => {
                return Err(naming(invalid(
                    "charset",
                    format!("metric `{name}`: text may not contain NUL characters"),
                )));
            }
            MetricValue::Text(_) | MetricValue::Bool(_) => {}
        }
    }
    Ok(())
}

/// Numbers are stored exactly, so they must fit a finite `f64` range and a bounded literal.
fn validate_number(name: &str, literal: &str) -> Result<(), ValidationError> {
    if literal.len() > NUMBER_MAX_CHARS {
        return Err(invalid(
            "range",
            format!("metric `{name}`: number literal longer than {NUMBER_MAX_CHARS} characters"),
        ));
    }
    let value: f64 = literal.parse().unwrap_or(f64::INFINITY);
    let underflows = value == 0.0
        && literal.bytes().any(|b| matches!(b, b'1'..=b'9'))
        && !mantissa_is_zero(literal);
    if !value.is_finite() || underflows {
        return Err(invalid(
            "range",
            format!("metric `{name}`: {literal} is outside the storable range (about ±1.8e308)"),
        ));
    }
    if decimal_places(literal) > NUMBER_MAX_DECIMAL_PLACES {
        return Err(invalid(
            "range",
            format!(
                "metric `{name}`: {literal} has more than {NUMBER_MAX_DECIMAL_PLACES} decimal places"
            ),
        ));
    }
    Ok(())
}

/// Most digits after the decimal point a stored number keeps (`0e-5000` would have 5000).
const NUMBER_MAX_DECIMAL_PLACES: i64 = 1000;

/// The digits after the point once the exponent is applied: `1.25e1` has 1, `5e-3` has 3.
fn decimal_places(literal: &str) -> i64 {
    let (mantissa, exponent) = match literal.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().unwrap_or(i64::MIN)),
        None => (literal, 0),
    };
    let fraction = mantissa.split_once('.').map_or(0, |(_, f)| f.len());
    i64::try_from(fraction)
        .unwrap_or(i64::MAX)
        .saturating_sub(exponent)
}

fn mantissa_is_zero(literal: &str) -> bool {
    let mantissa = literal.split(['e', 'E']).next().unwrap_or(literal);
    !mantissa.bytes().any(|b| matches!(b, b'1'..=b'9'))
}

pub(super) fn validate_host(host: &str) -> Result<(), ValidationError> {
    let chars = host.chars().count();
    if chars > HOST_MAX_CHARS {
        return Err(invalid(
            "length",
            format!("must be at most {HOST_MAX_CHARS} characters long, got {chars}"),
        ));
    }
    validate_no_nul(host)
}

fn validate_no_nul(text: &str) -> Result<(), ValidationError> {
    if text.contains('\0') {
        return Err(invalid(
            "charset",
            "may not contain NUL characters".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names() {
        for good in ["a", "mi_agente", "Agent-1.v2", &"x".repeat(100)] {
            assert!(validate_agent_name(good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "ü", "a/b", "a;drop", &"x".repeat(101)] {
            assert!(validate_agent_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_in_and_out_of_range() {
        for good in [
            "0",
            "-0.0",
            "0.1",
            "1e308",
            "1e-300",
            "0e999",
            "0e-1000",
            "9007199254740993",
        ] {
            assert!(validate_number("m", good).is_ok(), "{good}");
        }
        for bad in [
            "1e309",
            "-1e400",
            "1e-400",
            &format!("1{}", "0".repeat(70)),
            "0e-1001",
            "0.0e-99999999999999999999",
        ] {
            assert!(validate_number("m", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_names_the_metric_without_panicking_on_huge_numbers() {
        let report: RunReport = serde_json::from_str(
            r#"{"agent_name":"a","metrics":{"huge":1e400},"started_at":"2026-02-19T10:00:00Z",
                "finished_at":"2026-02-19T10:00:01Z"}"#,
        )
        .unwrap();
        let errors = report.check().unwrap_err();
        let metric_errors = &errors.field_errors()["metrics"];
        assert_eq!(metric_errors[0].params["metric"], "huge");
    }

    #[test]
    fn original_curl_example_parses_and_validates() {
        let report: RunReport = serde_json::from_str(
            r#"{"agent_name":"test","metrics":{"x":1},"started_at":"2026-02-19T10:00:00Z",
                "finished_at":"2026-02-19T10:00:01Z","error":null}"#,
        )
        .unwrap();
        report.check().unwrap();
        assert_eq!(report.status(), RunStatus::Success);
        assert_eq!(report.run_key, None);
    }
}
