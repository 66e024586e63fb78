//! Table and column identifiers for sea-query, named as in `migrations/postgres`.

use sea_query::Iden;

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum AgentRuns {
    Table,
    Id,
    RunKey,
    AgentName,
    StartedAt,
    FinishedAt,
    Status,
    ErrorMessage,
    DurationMs,
    Trigger,
    ScheduledFor,
    Host,
    MetricCount,
    ReceivedAt,
    Claimant,
    Deadline,
    OverdueAt,
    ExclusiveKey,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum AgentMetrics {
    Table,
    Id,
    RunId,
    AgentName,
    MetricName,
    MetricValue,
    MetricText,
    RecordedAt,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum Agents {
    Table,
    AgentName,
    LastRunAt,
    LastStatus,
    LastSuccessAt,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum AgentDailySummaries {
    Table,
    AgentName,
    Day,
    RunCount,
    SuccessCount,
    FailureCount,
    TotalDurationMs,
    MinDurationMs,
    MaxDurationMs,
    LastRunAt,
    LastStatus,
    LastSuccessAt,
    UpdatedAt,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum AgentMetricDailySummaries {
    Table,
    AgentName,
    MetricName,
    Day,
    ValueCount,
    ValueSum,
    ValueMin,
    ValueMax,
    LastValue,
    LastRecordedAt,
    UpdatedAt,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum AgentExpectations {
    Table,
    Name,
    AgentName,
    Cron,
    Timezone,
    EverySeconds,
    GraceSeconds,
    TimeoutSeconds,
    Source,
    CreatedAt,
    UpdatedAt,
    CheckedUntil,
    NextCheckAt,
    Publisher,
    CatchupWindow,
    Jitter,
    PauseAfterFailures,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum MissedSlots {
    Table,
    Id,
    AgentName,
    Slot,
    DetectedAt,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum LateSlots {
    Table,
    Id,
    AgentName,
    Slot,
    StartedAt,
    DetectedAt,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum Incidents {
    Table,
    Id,
    AgentName,
    Kind,
    OpenedAt,
    ResolvedAt,
    Summary,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum AlertEvents {
    Table,
    Id,
    IncidentId,
    Event,
    CreatedAt,
    RoutedAt,
    SilencedBy,
    SilencedUntil,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum AlertDeliveries {
    Table,
    Id,
    EventId,
    Route,
    Status,
    Attempts,
    NextAttemptAt,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum AlertAttempts {
    Table,
    DeliveryId,
    Attempt,
    AttemptedAt,
    StatusCode,
    Error,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum WatcherState {
    Table,
    Name,
    At,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum JobPauses {
    Table,
    Job,
    PausedBy,
    Note,
    Since,
    Until,
    ResumedAt,
    ResumedBy,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum JobCommands {
    Table,
    Id,
    Kind,
    Job,
    RunKey,
    Params,
    Reason,
    ScheduledFor,
    Batch,
    MaxParallel,
    RequestedBy,
    RequestedAt,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum AuditLog {
    Table,
    Id,
    At,
    Actor,
    Action,
    Job,
    SilenceId,
    RunKey,
    Note,
    Details,
}

#[derive(Debug, Clone, Copy, Iden)]
pub(super) enum Silences {
    Table,
    Id,
    Agents,
    Kinds,
    Since,
    Until,
    Note,
    CreatedBy,
    EndedAt,
    EndedBy,
}
