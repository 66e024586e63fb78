//! `POST /runs`: a run announces its start before its agent runs, so that it is visible while
//! it runs and, for schedulers in high availability, so that one claimant alone runs a slot.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use validator::{Validate, ValidationError};

use super::RunTrigger;
use super::report::{validate_agent_name, validate_host};

/// A run that starts now. The report that finishes it (`POST /metrics`) carries the same
/// `run_key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Validate)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunStart {
    #[validate(custom(function = "validate_agent_name"))]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")
    )]
    pub agent_name: String,
    /// The run's key: the same for every claimant of a scheduled slot (job and slot). Unique
    /// per agent: another agent's run under the same key is another run.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
        )
    )]
    pub run_key: Uuid,
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    #[serde(deserialize_with = "super::rfc3339::required")]
    pub started_at: DateTime<Utc>,
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
    /// The machine that runs the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(custom(function = "validate_host"))]
    #[cfg_attr(feature = "openapi", schema(max_length = 255, pattern = r"^[^\x00]*$"))]
    pub host: Option<String>,
    /// Who runs it: an id of the scheduler process or pod. A start repeated by the same claimant
    /// is harmless; another claimant's start of the same `run_key` is refused.
    #[validate(custom(function = "validate_claimant"))]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]+$")
    )]
    pub claimant: String,
    /// At most one `running` run of the agent holds this key at a time: another start of the
    /// agent with it is refused (409, naming the running run) until that run ends. The
    /// scheduler sends its job's name for `concurrency_policy = "forbid"`, so that the rule
    /// holds across replicas. Another agent's runs never hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[validate(custom(function = "validate_claimant"))]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]+$")
    )]
    pub exclusive: Option<String>,
    /// When the run is overdue: normally its start, its timeout and a grace. At most 7 days
    /// after `started_at`; 24 hours after it when absent.
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
    pub deadline: Option<DateTime<Utc>>,
}

/// `201` (started) or `200` (started before by the same claimant): the run's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunStarted {
    pub run_id: i64,
}

/// `409 run_claimed`'s `details`: the run that holds the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunClaim {
    pub run_id: i64,
    pub status: super::RunStatus,
    pub host: Option<String>,
    pub claimant: Option<String>,
}

fn validate_claimant(claimant: &str) -> Result<(), ValidationError> {
    if claimant.is_empty() {
        let mut error = ValidationError::new("length");
        error.message = Some("must not be empty".into());
        return Err(error);
    }
    // The same bounds as a host name: at most 255 characters, no NUL.
    validate_host(claimant)
}
