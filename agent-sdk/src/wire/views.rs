//! Response bodies of the collector's API.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{MetricValue, RunStatus, RunTrigger};

/// `POST /metrics`: `201` for a new run, `200` for a `run_key` seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IngestResponse {
    pub run_id: i64,
}

/// `POST /metrics/batch`: up to [`MAX_REPORTS_PER_BATCH`](super::limits::MAX_REPORTS_PER_BATCH)
/// reports, each judged on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchRequest {
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub reports: Vec<super::RunReport>,
}

/// `POST /metrics/batch`: one result per report, in the order sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchResponse {
    pub results: Vec<BatchItemResult>,
}

/// What `POST /metrics` would have answered for this report alone: `status` 201 with `run_id`
/// (stored), 200 with `run_id` (its `run_key` was stored before), or a 4xx with `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchItemResult {
    /// 201 or 200 with `run_id`; 400, 403, 422 with `error` (the report), 500 with `error` (a
    /// run the database refused, alone).
    #[cfg_attr(feature = "openapi", schema(minimum = 200, maximum = 599))]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// Every error the collector answers: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, machine-readable: `validation_failed`, `unauthorized`, `not_found`, ...
    pub code: String,
    /// For people.
    pub message: String,
    /// Which fields failed and why; `null` when there is nothing more to say.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub details: serde_json::Value,
}

/// One row of `agent_runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunView {
    pub id: i64,
    pub run_key: Option<Uuid>,
    pub agent_name: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub error_message: Option<String>,
    pub trigger: Option<RunTrigger>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub host: Option<String>,
    pub metric_count: i32,
    pub received_at: DateTime<Utc>,
}

/// `GET /runs/{id}`: the run and its metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunView,
    pub metrics: Vec<MetricPoint>,
}

/// `GET /runs`: newest first; pass `next_cursor` back as `cursor` for the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunPage {
    pub runs: Vec<RunView>,
    pub next_cursor: Option<String>,
}

/// One row of `agent_metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricPoint {
    pub id: i64,
    pub run_id: i64,
    pub agent_name: String,
    pub metric_name: String,
    pub value: MetricValue,
    pub recorded_at: DateTime<Utc>,
}

/// `GET /metrics`: newest first; pass `next_cursor` back as `cursor` for the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricPage {
    pub metrics: Vec<MetricPoint>,
    pub next_cursor: Option<String>,
}

/// `GET /agents`: one entry per agent that has finished a run or is expected (an expectation
/// declared or published: it appears from the moment it is expected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentsResponse {
    pub agents: Vec<AgentOverview>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentOverview {
    pub agent_name: String,
    /// The latest `started_at` of its finished runs; `null` for an agent expected that never
    /// finished a run.
    pub last_run_at: Option<DateTime<Utc>>,
    /// That run's status (`null` with it).
    pub last_status: Option<RunStatus>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub runs_today: i64,
    pub failures_today: i64,
    pub runs_7d: i64,
    pub failures_7d: i64,
    /// Runs of the agent `running` now (started with `POST /runs`, not yet finished).
    pub running: i64,
    /// When the oldest of them started.
    pub running_since: Option<DateTime<Utc>>,
    /// At a glance: the worst open incident's kind (failing, overdue, missed, stale, slow, in
    /// that order), else `running` while a run is, else `ok`; `new` for an expected agent that
    /// never finished a run while nothing is overdue.
    pub state: AgentState,
    /// The kinds of the agent's open incidents (`GET /incidents`).
    pub incidents: Vec<super::IncidentKind>,
}

/// An agent's state in `GET /agents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Ok,
    /// Expected, never finished a run, nothing overdue yet.
    New,
    Running,
    Failing,
    Overdue,
    Missed,
    Stale,
    Slow,
}

impl AgentState {
    /// The state of an expected agent that never finished a run: [`AgentState::of`], `new`
    /// where that would be `ok`.
    pub fn of_expected(incidents: &[super::IncidentKind], running: bool) -> Self {
        match Self::of(incidents, running) {
            Self::Ok => Self::New,
            state => state,
        }
    }

    /// The state of an agent with these open incidents and running runs.
    pub fn of(incidents: &[super::IncidentKind], running: bool) -> Self {
        use super::IncidentKind as K;
        for (kind, state) in [
            (K::Failing, Self::Failing),
            (K::Overdue, Self::Overdue),
            (K::Missed, Self::Missed),
            (K::Stale, Self::Stale),
            (K::Slow, Self::Slow),
        ] {
            if incidents.contains(&kind) {
                return state;
            }
        }
        if running { Self::Running } else { Self::Ok }
    }
}

/// `GET /summaries`: one row of `agent_daily_summaries` (per agent and UTC day).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DailySummary {
    pub agent_name: String,
    pub day: NaiveDate,
    pub run_count: i64,
    pub success_count: i64,
    pub failure_count: i64,
    pub total_duration_ms: i64,
    pub min_duration_ms: Option<i64>,
    pub max_duration_ms: Option<i64>,
    pub avg_duration_ms: Option<f64>,
    pub last_run_at: DateTime<Utc>,
    pub last_status: RunStatus,
    pub last_success_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SummariesResponse {
    pub summaries: Vec<DailySummary>,
}
