//! A report turned into the rows it will be stored as.

use std::borrow::Cow;

use agent_sdk::wire::{MetricValue, RunReport, RunStatus, RunTrigger};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use uuid::Uuid;
use validator::{ValidationError, ValidationErrors};

use super::AgentName;

/// How far in the future a timestamp may be (clock skew between hosts), before it is refused.
pub const MAX_FUTURE_SKEW: TimeDelta = TimeDelta::days(1);

/// Error messages longer than this are cut; a failed run is never refused for its message.
const ERROR_MESSAGE_MAX_BYTES: usize = 64 * 1024;

/// How a metric value lands in `agent_metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredValue {
    /// `metric_value NUMERIC`: the decimal exactly as sent, in PostgreSQL's text form
    /// ([`canonical_decimal`](super::canonical_decimal)); booleans as `1`/`0`.
    Numeric(String),
    /// `metric_text TEXT`.
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMetric {
    pub name: String,
    pub value: StoredValue,
}

/// A run that passed every rule and is ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// The client's key, or one generated here so that every stored run has one.
    pub run_key: Uuid,
    pub agent_name: AgentName,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub status: RunStatus,
    pub error_message: Option<String>,
    pub trigger: RunTrigger,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub host: Option<String>,
    pub metrics: Vec<NewMetric>,
}

impl NewRun {
    /// Checks `report` against every rule; `now` bounds how far in the future timestamps may be.
    pub fn parse(report: RunReport, now: DateTime<Utc>) -> Result<Self, ValidationErrors> {
        let mut errors = report.check().err().unwrap_or_default();
        if report.finished_at < report.started_at {
            errors.add(
                "finished_at",
                invalid(
                    "order",
                    format!(
                        "finished_at ({}) is before started_at ({})",
                        report.finished_at.to_rfc3339(),
                        report.started_at.to_rfc3339()
                    ),
                ),
            );
        }
        refuse_future(
            &mut errors,
            now,
            [
                ("started_at", Some(report.started_at)),
                ("finished_at", Some(report.finished_at)),
                ("scheduled_for", report.scheduled_for),
            ],
        );
        if !errors.is_empty() {
            return Err(errors);
        }

        let status = report.status();
        // Validated by `report.check()` above.
        let agent_name = AgentName::checked(report.agent_name);
        let metrics = report
            .metrics
            .into_iter()
            .map(|(name, value)| NewMetric {
                name,
                value: match value {
                    MetricValue::Number(n) => {
                        StoredValue::Numeric(super::canonical_decimal(n.as_str()))
                    }
                    MetricValue::Bool(b) => StoredValue::Numeric(if b { "1" } else { "0" }.into()),
                    MetricValue::Text(text) => StoredValue::Text(text),
                },
            })
            .collect();
        Ok(Self {
            run_key: report.run_key.unwrap_or_else(Uuid::new_v4),
            agent_name,
            started_at: to_micros(report.started_at),
            finished_at: to_micros(report.finished_at),
            status,
            error_message: report.error.map(truncate_message),
            trigger: report.trigger.unwrap_or(RunTrigger::Api),
            scheduled_for: report.scheduled_for.map(to_micros),
            host: report.host,
            metrics,
        })
    }

    pub fn duration_ms(&self) -> i64 {
        (self.finished_at - self.started_at).num_milliseconds()
    }

    /// `agent_runs.metric_count` (an INTEGER): at most [`MAX_METRICS_PER_RUN`](agent_sdk::wire::limits::MAX_METRICS_PER_RUN).
    pub fn metric_count(&self) -> i32 {
        i32::try_from(self.metrics.len()).unwrap_or(i32::MAX)
    }
}

/// Timestamps keep microseconds, as PostgreSQL's `timestamptz` does: both backends store the
/// same instant, and keyset cursors (microseconds) match the rows exactly.
pub(super) fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

/// Adds an error for each of `times` more than [`MAX_FUTURE_SKEW`] after `now`.
pub(super) fn refuse_future<const N: usize>(
    errors: &mut ValidationErrors,
    now: DateTime<Utc>,
    times: [(&'static str, Option<DateTime<Utc>>); N],
) {
    let latest = now + MAX_FUTURE_SKEW;
    for (field, at) in times {
        if at.is_some_and(|at| at > latest) {
            errors.add(
                field,
                invalid(
                    "future",
                    format!("{field} is more than a day in the future"),
                ),
            );
        }
    }
}

pub(super) fn invalid(code: &'static str, message: String) -> ValidationError {
    ValidationError::new(code).with_message(Cow::Owned(message))
}

fn truncate_message(mut message: String) -> String {
    if message.len() > ERROR_MESSAGE_MAX_BYTES {
        let mut cut = ERROR_MESSAGE_MAX_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("… [truncated]");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(json: &str) -> RunReport {
        serde_json::from_str(json).unwrap()
    }

    const NOW: &str = "2026-02-19T12:00:00Z";

    fn now() -> DateTime<Utc> {
        NOW.parse().unwrap()
    }

    #[test]
    fn values_map_to_columns() {
        let run = NewRun::parse(
            report(
                r#"{"agent_name":"a","metrics":{"n":0.1,"t":true,"f":false,"s":"ok"},
                    "started_at":"2026-02-19T10:00:00Z","finished_at":"2026-02-19T10:00:45Z"}"#,
            ),
            now(),
        )
        .unwrap();
        let values: Vec<_> = run.metrics.iter().map(|m| m.value.clone()).collect();
        assert_eq!(
            values,
            [
                StoredValue::Numeric("0.1".into()),
                StoredValue::Numeric("1".into()),
                StoredValue::Numeric("0".into()),
                StoredValue::Text("ok".into()),
            ]
        );
        assert_eq!(run.duration_ms(), 45_000);
        assert_eq!(run.status, RunStatus::Success);
        assert_eq!(run.trigger, RunTrigger::Api);
    }

    #[test]
    fn time_rules() {
        let backwards = NewRun::parse(
            report(
                r#"{"agent_name":"a","started_at":"2026-02-19T10:00:01Z","finished_at":"2026-02-19T10:00:00Z"}"#,
            ),
            now(),
        )
        .unwrap_err();
        assert!(backwards.field_errors().contains_key("finished_at"));

        let future = NewRun::parse(
            report(
                r#"{"agent_name":"a","started_at":"2026-02-21T10:00:00Z","finished_at":"2026-02-21T10:00:00Z"}"#,
            ),
            now(),
        )
        .unwrap_err();
        assert!(future.field_errors().contains_key("started_at"));
        assert!(future.field_errors().contains_key("finished_at"));
    }

    #[test]
    fn long_error_messages_are_cut_on_a_char_boundary() {
        let cut = truncate_message("é".repeat(ERROR_MESSAGE_MAX_BYTES));
        assert!(cut.len() <= ERROR_MESSAGE_MAX_BYTES + "… [truncated]".len());
        assert!(cut.ends_with("[truncated]"));
    }
}
