//! A run's start (`POST /runs`) turned into the `running` row it will be stored as.

use agent_sdk::wire::{RunStart, RunTrigger};
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;
use validator::{Validate, ValidationErrors};

use super::AgentName;
use super::new_run::{invalid, refuse_future, to_micros};

/// The latest deadline a start may ask for, after its `started_at`: a run holds its slot and
/// its exclusive key until it ends or its deadline passes, so none holds them for ever.
pub const MAX_DEADLINE: TimeDelta = TimeDelta::days(7);

/// The deadline of a start that gives none, after its `started_at`.
pub const DEFAULT_DEADLINE: TimeDelta = TimeDelta::hours(24);

/// A start that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStart {
    pub run_key: Uuid,
    pub agent_name: AgentName,
    pub started_at: DateTime<Utc>,
    pub trigger: RunTrigger,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub host: Option<String>,
    pub claimant: String,
    pub exclusive: Option<String>,
    /// Given, or [`DEFAULT_DEADLINE`] after `started_at`.
    pub deadline: DateTime<Utc>,
}

impl NewStart {
    /// Checks `start` against every rule; `now` bounds how far in the future it may begin.
    pub fn parse(start: RunStart, now: DateTime<Utc>) -> Result<Self, ValidationErrors> {
        let mut errors = start.validate().err().unwrap_or_default();
        refuse_future(
            &mut errors,
            now,
            [
                ("started_at", Some(start.started_at)),
                ("scheduled_for", start.scheduled_for),
            ],
        );
        if let Some(deadline) = start.deadline {
            let wrong = match deadline - start.started_at {
                after if after <= TimeDelta::zero() => Some(("order", "is not after".to_owned())),
                after if after > MAX_DEADLINE => Some((
                    "range",
                    format!("is more than {} days after", MAX_DEADLINE.num_days()),
                )),
                _ => None,
            };
            if let Some((code, what)) = wrong {
                let message = format!(
                    "deadline ({}) {what} started_at ({})",
                    deadline.to_rfc3339(),
                    start.started_at.to_rfc3339()
                );
                errors.add("deadline", invalid(code, message));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            run_key: start.run_key,
            // Validated by `start.validate()` above.
            agent_name: AgentName::checked(start.agent_name),
            started_at: to_micros(start.started_at),
            trigger: start.trigger.unwrap_or(RunTrigger::Api),
            scheduled_for: start.scheduled_for.map(to_micros),
            host: start.host,
            claimant: start.claimant,
            exclusive: start.exclusive,
            deadline: to_micros(
                start
                    .deadline
                    .unwrap_or(start.started_at + DEFAULT_DEADLINE),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(json: serde_json::Value) -> RunStart {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_start_needs_a_claimant_and_a_deadline_after_it() {
        let now = "2026-12-02T12:00:00Z".parse().unwrap();
        let ok = NewStart::parse(
            start(serde_json::json!({
                "agent_name": "a", "run_key": "00000000-0000-4000-8000-000000000001",
                "started_at": "2026-12-02T11:59:00Z", "claimant": "host-1:42",
                "deadline": "2026-12-02T12:09:00Z"})),
            now,
        )
        .unwrap();
        assert_eq!(ok.trigger, RunTrigger::Api);

        let without = NewStart::parse(
            start(serde_json::json!({
                "agent_name": "a", "run_key": "00000000-0000-4000-8000-000000000001",
                "started_at": "2026-12-02T11:59:00Z", "claimant": "host-1:42"})),
            now,
        )
        .unwrap();
        assert_eq!(without.deadline, without.started_at + DEFAULT_DEADLINE);

        let too_far = NewStart::parse(
            start(serde_json::json!({
                "agent_name": "a", "run_key": "00000000-0000-4000-8000-000000000001",
                "started_at": "2026-12-02T11:59:00Z", "claimant": "host-1:42",
                "deadline": "2026-12-09T11:59:01Z"})),
            now,
        )
        .unwrap_err();
        assert_eq!(super::super::error_fields(&too_far), ["deadline"]);

        let bad = NewStart::parse(
            start(serde_json::json!({
                "agent_name": "no spaces", "run_key": "00000000-0000-4000-8000-000000000001",
                "started_at": "2026-12-04T12:00:00Z", "claimant": "",
                "deadline": "2026-12-04T11:00:00Z"})),
            now,
        )
        .unwrap_err();
        assert_eq!(
            super::super::error_fields(&bad),
            ["agent_name", "claimant", "deadline", "started_at"]
        );
    }
}
