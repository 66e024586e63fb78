//! Acting on jobs (scope `operate`): pause and resume a job, run it now, cancel a run; the jobs
//! the schedulers published (`GET /jobs`), the audit of every action (`GET /audit`), and the
//! commands each scheduler replica polls for (`POST /scheduler/commands`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Longest note of an action, in characters.
pub const NOTE_MAX_CHARS: usize = 1000;

/// `POST /jobs/{job}/pause`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why, for whoever looks next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1000, pattern = r"^[^\x00]*$")
    )]
    pub note: Option<String>,
    /// When the job resumes by itself; absent: when resumed.
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
    pub until: Option<DateTime<Utc>>,
}

/// `POST /jobs/{job}/resume` and `POST /runs/{id}/cancel`: an optional note.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1000, pattern = r"^[^\x00]*$")
    )]
    pub note: Option<String>,
}

/// `POST /jobs/{job}/runs`: run the job now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RunNowRequest {
    /// Merged over the job's own `params`, for this run only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub params: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1000, pattern = r"^[^\x00]*$")
    )]
    pub note: Option<String>,
}

/// `202` to `POST /jobs/{job}/runs`: the key the run will be stored under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunRequested {
    pub run_key: Uuid,
}

/// Most slots one backfill may ask for.
pub const MAX_BACKFILL_SLOTS: usize = 1000;

/// `POST /jobs/{job}/backfill`: run the job's past slots in `[from, to]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// The first slot's earliest time (inclusive).
    #[serde(deserialize_with = "super::rfc3339::required")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    pub from: DateTime<Utc>,
    /// The last slot's latest time (inclusive), not in the future.
    #[serde(deserialize_with = "super::rfc3339::required")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    pub to: DateTime<Utc>,
    /// Slots of this backfill running at once, across every replica; 1 when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::whole::optional_u32"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub max_parallel: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1000, pattern = r"^[^\x00]*$")
    )]
    pub note: Option<String>,
}

/// `202` to `POST /jobs/{job}/backfill`: the slots to run (those that had not run, nor been
/// asked for already).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackfillAccepted {
    pub slots: usize,
}

/// A job's pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobPause {
    /// The subject of the token that paused it (`scheduler` when it paused itself).
    pub paused_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub since: DateTime<Utc>,
    /// When it resumes by itself; absent: when resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// A job a scheduler published, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    /// The job's name: what its runs are stored as (`agent_name`).
    pub job: String,
    pub cron: String,
    pub timezone: String,
    /// The next slot of its cron (none when the cron has no future slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_slot: Option<DateTime<Utc>>,
    /// Runs of the job now `running`.
    pub running: i64,
    /// What runs of the slots missed while no scheduler ran (`latest`, `0s`, or a length).
    pub catchup_window: String,
    /// The most a slot's run starts after its slot, when the job has a jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    /// The job pauses itself after this many failed runs in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after_failures: Option<u32>,
    /// Present while the job is paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<JobPause>,
}

/// `GET /jobs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobsResponse {
    pub jobs: Vec<JobView>,
}

/// What an audited action did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Pause,
    Resume,
    Run,
    Cancel,
    Backfill,
    Silence,
    Unsilence,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Run => "run",
            Self::Cancel => "cancel",
            Self::Backfill => "backfill",
            Self::Silence => "silence",
            Self::Unsilence => "unsilence",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pause" => Some(Self::Pause),
            "resume" => Some(Self::Resume),
            "run" => Some(Self::Run),
            "cancel" => Some(Self::Cancel),
            "backfill" => Some(Self::Backfill),
            "silence" => Some(Self::Silence),
            "unsilence" => Some(Self::Unsilence),
            _ => None,
        }
    }
}

/// One action, as `GET /audit` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The subject of the token that acted.
    pub actor: String,
    pub action: AuditAction,
    /// The job acted on (none for a silence's actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The silence made or ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_id: Option<i64>,
    /// The run acted on (`cancel`) or requested (`run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_key: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What else the action carried: a pause's `until`, a run's `params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub details: Option<Value>,
}

/// `GET /audit`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditResponse {
    pub entries: Vec<AuditEntry>,
}

/// `POST /scheduler/commands`: a scheduler replica asks what to do about its jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommandsRequest {
    /// This replica, as its starts name it (`RunStart::claimant`): the runs it is to cancel
    /// are those it claimed.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub claimant: String,
    /// The jobs this replica runs.
    #[cfg_attr(feature = "openapi", schema(max_items = 10000))]
    pub jobs: Vec<String>,
}

/// A job paused now, as a scheduler is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PausedJob {
    pub job: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// A run asked for by hand, or a slot of a backfill, not yet started anywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunCommand {
    pub job: String,
    pub run_key: Uuid,
    /// A backfill's slot: the run is that slot's (trigger `backfill`); absent: a run now
    /// (trigger `manual`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::rfc3339::optional"
    )]
    pub scheduled_for: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub params: Option<Map<String, Value>>,
}

/// A run of this replica's to cancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancelCommand {
    pub job: String,
    pub run_key: Uuid,
    /// Who cancelled it and why, as the run's `error` will say.
    pub reason: String,
}

/// The answer to `POST /scheduler/commands`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Commands {
    pub paused: Vec<PausedJob>,
    pub runs: Vec<RunCommand>,
    pub cancels: Vec<CancelCommand>,
}

/// Most agent patterns of one silence.
pub const MAX_SILENCE_AGENTS: usize = 100;

/// `POST /silences`: hold the alerts of matching incidents until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    /// Agent names, or prefixes ending in `*` (`billing_*`; `*` alone: every agent).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 100))]
    pub agents: Vec<String>,
    /// The incident kinds silenced; absent or empty: every kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<super::IncidentKind>>,
    /// When it ends (in the future, at most 90 days on).
    #[serde(deserialize_with = "super::rfc3339::required")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
        )
    )]
    pub until: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1000, pattern = r"^[^\x00]*$")
    )]
    pub note: Option<String>,
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Silence {
    pub id: i64,
    pub agents: Vec<String>,
    /// Empty: every kind.
    pub kinds: Vec<super::IncidentKind>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Ended before `until` (`DELETE /silences/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// In force now.
    pub active: bool,
}

/// `GET /silences`: those in force, then those that ended in the last 7 days; newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SilencesResponse {
    pub silences: Vec<Silence>,
}
