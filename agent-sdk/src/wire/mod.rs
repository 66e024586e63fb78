//! The collector's HTTP contract: request and response bodies, and the rules a report must meet.

mod metrics;
mod monitoring;
mod operate;
mod report;
mod rfc3339;
#[cfg(feature = "openapi")]
mod schema;
mod start;
mod views;
mod whole;

pub use metrics::{MetricValue, Metrics, Number};
pub use monitoring::{
    Expectation, ExpectationRequest, ExpectationSource, ExpectationsResponse, Incident,
    IncidentKind, IncidentsResponse, LateResponse, LateSlot, MissedResponse, MissedSlot,
    ScheduledJob, ScheduledJobs,
};
pub use operate::{
    AuditAction, AuditEntry, AuditResponse, BackfillAccepted, BackfillRequest, CancelCommand,
    Commands, CommandsRequest, JobPause, JobView, JobsResponse, MAX_BACKFILL_SLOTS,
    MAX_SILENCE_AGENTS, NOTE_MAX_CHARS, NoteRequest, PauseRequest, PausedJob, RunCommand,
    RunNowRequest, RunRequested, Silence, SilenceRequest, SilencesResponse,
};
pub use report::{
    RunReport, RunStatus, RunTrigger, validate_agent_name, validate_metric_name, validate_metrics,
};
pub use start::{RunClaim, RunStart, RunStarted};
pub use views::{
    AgentOverview, AgentState, AgentsResponse, BatchItemResult, BatchRequest, BatchResponse,
    DailySummary, ErrorBody, ErrorDetail, IngestResponse, MetricPage, MetricPoint, RunDetail,
    RunPage, RunView, SummariesResponse,
};

/// Limits every report must respect; the collector refuses anything beyond them.
pub mod limits {
    /// Longest agent name, in characters.
    pub const AGENT_NAME_MAX_CHARS: usize = 100;
    /// Longest metric name, in characters.
    pub const METRIC_NAME_MAX_CHARS: usize = 200;
    /// Most metrics one run may carry.
    pub const MAX_METRICS_PER_RUN: usize = 1000;
    /// Longest number literal, in characters (`0.1`, `-12e3`).
    pub const NUMBER_MAX_CHARS: usize = 64;
    /// Longest `host` value, in characters.
    pub const HOST_MAX_CHARS: usize = 255;
    /// Most reports one `POST /metrics/batch` may carry.
    pub const MAX_REPORTS_PER_BATCH: usize = 1000;
}
