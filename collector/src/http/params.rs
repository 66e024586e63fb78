//! Parsing of the parameters (and the small body fields) several handlers share; each failure
//! names its parameter or field.

use agent_sdk::wire::NOTE_MAX_CHARS;
use chrono::{DateTime, NaiveDate, Utc};

use super::api_error::ApiError;
use super::caller::Caller;
use crate::domain::{AgentName, Cursor, MetricName};

pub(super) const DEFAULT_LIMIT: u64 = 100;
pub(super) const MAX_LIMIT: u64 = 1000;

pub(super) fn limit(value: Option<u64>) -> Result<u64, ApiError> {
    match value.unwrap_or(DEFAULT_LIMIT) {
        limit @ 1..=MAX_LIMIT => Ok(limit),
        other => Err(ApiError::bad_param(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}, got {other}"),
        )),
    }
}

/// Optional bounds of a time range: `from` inclusive, `to` exclusive.
pub(super) type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `from` (inclusive) and `to` (exclusive), `from` not after `to`.
pub(super) fn time_range(from: Option<&str>, to: Option<&str>) -> Result<TimeRange, ApiError> {
    let (from, to) = (time("from", from)?, time("to", to)?);
    range(from, to)?;
    Ok((from, to))
}

fn time(field: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    ApiError::bad_param(
                        field,
                        format!("{e}; expected RFC 3339, e.g. 2026-02-19T10:00:00Z"),
                    )
                })
        })
        .transpose()
}

pub(super) fn date(field: &str, value: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    value
        .map(|v| {
            v.parse::<NaiveDate>()
                .map_err(|e| ApiError::bad_param(field, format!("{e}; expected YYYY-MM-DD")))
        })
        .transpose()
}

pub(super) fn agent_name(value: Option<&str>) -> Result<Option<AgentName>, ApiError> {
    value.map(|v| name("agent_name", v)).transpose()
}

/// An agent's (or a job's) name given as `field`.
pub(super) fn name(field: &str, value: &str) -> Result<AgentName, ApiError> {
    AgentName::parse(value).map_err(|e| refused(field, e))
}

/// An action's note: at most [`NOTE_MAX_CHARS`] characters, no NUL; blank is none.
pub(super) fn note(note: Option<&str>) -> Result<Option<&str>, ApiError> {
    let Some(note) = note else {
        return Ok(None);
    };
    let chars = note.chars().count();
    if chars > NOTE_MAX_CHARS || note.contains('\0') {
        return Err(ApiError::invalid(
            "note",
            format!("must be at most {NOTE_MAX_CHARS} characters without NUL, got {chars}"),
        ));
    }
    Ok(Some(note).filter(|n| !n.trim().is_empty()))
}

pub(super) fn metric_name(value: Option<String>) -> Result<Option<MetricName>, ApiError> {
    value
        .map(|v| MetricName::parse(v).map_err(|e| refused("metric_name", e)))
        .transpose()
}

fn refused(field: &str, error: validator::ValidationError) -> ApiError {
    ApiError::bad_param(
        field,
        error.message.map(|m| m.into_owned()).unwrap_or_default(),
    )
}

pub(super) fn cursor(value: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    value
        .map(|v| {
            v.parse()
                .map_err(|e: &str| ApiError::bad_param("cursor", e))
        })
        .transpose()
}

/// `from` must come before `to`.
pub(super) fn range<T: PartialOrd>(from: Option<T>, to: Option<T>) -> Result<(), ApiError> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => {
            Err(ApiError::bad_param("from", "must not be after `to`"))
        }
        _ => Ok(()),
    }
}

/// The `agent_name` filter, which the caller's token must cover.
pub(super) fn agent_filter(
    caller: &Caller,
    value: Option<&str>,
) -> Result<Option<AgentName>, ApiError> {
    agent_filter_as(caller, "agent_name", value)
}

/// An agent (or job) to filter by, given as `field`, that the caller may see.
pub(super) fn agent_filter_as(
    caller: &Caller,
    field: &str,
    value: Option<&str>,
) -> Result<Option<AgentName>, ApiError> {
    let agent_name = value.map(|v| name(field, v)).transpose()?;
    if let Some(agent) = &agent_name {
        caller.require_agent(agent.as_str())?;
    }
    Ok(agent_name)
}
