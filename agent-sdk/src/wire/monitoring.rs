//! Expected against actual: what should run (`PUT /agents/{name}/expectation`,
//! `GET /expectations`), the slots nothing answered (`GET /missed`) and the incidents the
//! collector's watcher opens and resolves (`GET /incidents`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What to expect of an agent: a cron expression in a time zone, or a period; and a grace.
/// Durations are written as `90s`, `10m`, `1h`, `1d` (humantime).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExpectationRequest {
    /// Five fields (minute hour day month weekday) or six (seconds first). Not with `every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub cron: Option<String>,
    /// The IANA time zone of `cron` (`Europe/Madrid`); UTC when absent. Only with `cron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub timezone: Option<String>,
    /// A run is expected at least this often (`1h`): a dead man's switch. Not with `cron`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub every: Option<String>,
    /// How late a run may start before its slot counts as missed; 5 minutes when absent, at
    /// most a year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub grace: Option<String>,
}

/// Who declared an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExpectationSource {
    /// `PUT /agents/{name}/expectation` or `collector expect`.
    Api,
    /// A scheduler publishing its jobs.
    Scheduler,
}

impl ExpectationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Scheduler => "scheduler",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "api" => Some(Self::Api),
            "scheduler" => Some(Self::Scheduler),
            _ => None,
        }
    }
}

/// A stored expectation and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Expectation {
    pub name: String,
    pub agent_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The period, as `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// As `5m`.
    pub grace: String,
    pub source: ExpectationSource,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The latest slot at or before now (none before the expectation's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_slot: Option<DateTime<Utc>>,
    /// The next slot after now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_slot: Option<DateTime<Utc>>,
}

/// `GET /expectations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExpectationsResponse {
    pub expectations: Vec<Expectation>,
}

/// A slot no run answered within its grace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MissedSlot {
    pub id: i64,
    pub agent_name: String,
    pub slot: DateTime<Utc>,
    pub detected_at: DateTime<Utc>,
}

/// A slot answered late: the run that answered it started more than the collector's
/// `SLOT_LATE_AFTER` after the slot, within its grace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LateSlot {
    pub id: i64,
    pub agent_name: String,
    pub slot: DateTime<Utc>,
    /// When the run that answered the slot started.
    pub started_at: DateTime<Utc>,
    pub detected_at: DateTime<Utc>,
}

/// `GET /late`: newest detection first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LateResponse {
    pub late: Vec<LateSlot>,
}

/// `GET /missed`: newest detection first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MissedResponse {
    pub missed: Vec<MissedSlot>,
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// An expected slot had no run within its grace.
    Missed,
    /// The agent's latest runs failed.
    Failing,
    /// No successful run for several periods.
    Stale,
    /// A run stayed `running` past its deadline.
    Overdue,
    /// A run took much longer than the agent's recent ones.
    Slow,
    /// The job paused itself after its `pause_after_failures` failed runs in a row; resolved
    /// when it is resumed.
    Paused,
}

impl IncidentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missed => "missed",
            Self::Failing => "failing",
            Self::Stale => "stale",
            Self::Overdue => "overdue",
            Self::Slow => "slow",
            Self::Paused => "paused",
        }
    }

    /// Every kind, in the order pages list them.
    pub const ALL: [Self; 6] = [
        Self::Missed,
        Self::Failing,
        Self::Stale,
        Self::Overdue,
        Self::Slow,
        Self::Paused,
    ];

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// An incident: open until its condition clears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Incident {
    pub id: i64,
    pub agent_name: String,
    pub kind: IncidentKind,
    pub opened_at: DateTime<Utc>,
    /// Absent while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// One line: what happened.
    pub summary: String,
}

/// `GET /incidents`: open ones first, then the most recently opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IncidentsResponse {
    pub incidents: Vec<Incident>,
}

/// One job of a scheduler's schedule, as it publishes it (`PUT /expectations/scheduler`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduledJob {
    /// The job's name: what its runs are reported as (`agent_name`).
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")
    )]
    pub job: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub cron: String,
    /// IANA time zone of `cron`.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub timezone: String,
    /// As `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub timeout: Option<String>,
    /// A disabled job is not expected.
    pub enabled: bool,
    /// What runs of the slots missed while no scheduler ran: a length (`10m`), `latest` or
    /// `0s`; absent: `latest`. Shown by `GET /jobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub catchup_window: Option<String>,
    /// The most a slot's run starts after its slot (`30s`). Shown by `GET /jobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub jitter: Option<String>,
    /// The job pauses itself after this many failed runs in a row (the collector's watcher
    /// pauses it, audited as `scheduler`, and opens a `paused` incident), until resumed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::whole::optional_u32"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub pause_after_failures: Option<u32>,
}

/// A scheduler's whole schedule: its jobs replace the expectations scheduler published
/// before (a removed or disabled job is no longer expected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduledJobs {
    #[cfg_attr(feature = "openapi", schema(max_items = 10000))]
    pub jobs: Vec<ScheduledJob>,
}
