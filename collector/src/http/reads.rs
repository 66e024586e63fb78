//! The read endpoints (scope `read`): runs, metrics, agents and daily summaries.

use agent_sdk::wire::{
    AgentsResponse, ErrorBody, MetricPage, RunDetail, RunPage, RunStatus, SummariesResponse,
};
use axum::Json;
use axum::extract::State;
use chrono::{Days, Utc};
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::params;
use crate::auth::Scope;
use crate::domain::AgentName;
use crate::store::{MetricFilter, RunFilter, SummaryFilter};

/// The longest date range `GET /summaries` serves in one answer.
const MAX_SUMMARY_DAYS: u64 = 366;
/// `GET /summaries` without `from`: this many days up to `to`.
const DEFAULT_SUMMARY_DAYS: u64 = 30;

/// The `agent_name` filter, which the caller's token must cover.
pub(super) fn agent_filter(
    caller: &Caller,
    value: Option<&str>,
) -> Result<Option<AgentName>, ApiError> {
    let agent_name = params::agent_name(value)?;
    if let Some(agent) = &agent_name {
        caller.require_agent(agent.as_str())?;
    }
    Ok(agent_name)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RunsQuery {
    /// Only this agent's.
    #[param(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")]
    agent_name: Option<String>,
    #[param(value_type = Option<RunStatus>)]
    status: Option<String>,
    /// Inclusive, RFC 3339.
    #[param(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")]
    from: Option<String>,
    /// Exclusive, RFC 3339; not before `from`.
    #[param(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")]
    to: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,16}_[0-9]{1,18}$")]
    cursor: Option<String>,
    /// Rows per page; 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// `GET /runs`: newest first, keyset-paginated.
#[utoipa::path(get, path = "/runs", tag = "read", params(RunsQuery),
    responses((status = 200, body = RunPage),
        (status = 400, description = "A bad parameter, named in details.fields", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Wrong scope, or an agent outside the token's list", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Json<RunPage>, ApiError> {
    caller.require(Scope::Read)?;
    let agent_name = agent_filter(&caller, query.agent_name.as_deref())?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                ApiError::bad_param(
                    "status",
                    format!("{s:?}; expected running, success or failed"),
                )
            })
        })
        .transpose()?;
    let (from, to) = params::time_range(query.from.as_deref(), query.to.as_deref())?;
    let filter = RunFilter {
        agent_name,
        status,
        from,
        to,
        cursor: params::cursor(query.cursor.as_deref())?,
        limit: params::limit(query.limit)?,
        access: caller.access(),
    };
    Ok(Json(state.store.list_runs(&filter).await?))
}

/// `GET /runs/{id}`: one run with its metrics.
#[utoipa::path(get, path = "/runs/{id}", tag = "read", params(("id" = i64, Path, description = "The run's id")),
    responses((status = 200, body = RunDetail),
        (status = 404, description = "No such run (or not visible to this token)", body = ErrorBody),
        (status = 400, description = "A bad parameter, named in details.fields", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Wrong scope, or an agent outside the token's list", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(id))]
pub(super) async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<RunDetail>, ApiError> {
    caller.require(Scope::Read)?;
    tracing::Span::current().record("id", id);
    let not_found = || ApiError::not_found(format!("no run with id {id}"));
    let run = state.store.get_run(id).await?.ok_or_else(not_found)?;
    // A token limited to other agents learns nothing about this run, not even that it exists.
    if !caller.0.allows_agent(&run.run.agent_name) {
        return Err(not_found());
    }
    Ok(Json(run))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct MetricsQuery {
    /// Only this agent's.
    #[param(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")]
    agent_name: Option<String>,
    /// Only this metric's values.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    metric_name: Option<String>,
    /// Inclusive, RFC 3339.
    #[param(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")]
    from: Option<String>,
    /// Exclusive, RFC 3339; not before `from`.
    #[param(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")]
    to: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,16}_[0-9]{1,18}$")]
    cursor: Option<String>,
    /// Rows per page; 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// `GET /metrics`: metric values, newest first, keyset-paginated.
#[utoipa::path(get, path = "/metrics", tag = "read", params(MetricsQuery),
    responses((status = 200, body = MetricPage),
        (status = 400, description = "A bad parameter, named in details.fields", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Wrong scope, or an agent outside the token's list", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_metrics(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<MetricsQuery>,
) -> Result<Json<MetricPage>, ApiError> {
    caller.require(Scope::Read)?;
    let agent_name = agent_filter(&caller, query.agent_name.as_deref())?;
    let (from, to) = params::time_range(query.from.as_deref(), query.to.as_deref())?;
    let filter = MetricFilter {
        agent_name,
        metric_name: params::metric_name(query.metric_name)?,
        from,
        to,
        cursor: params::cursor(query.cursor.as_deref())?,
        limit: params::limit(query.limit)?,
        access: caller.access(),
    };
    Ok(Json(state.store.list_metrics(&filter).await?))
}

/// `GET /agents`: per agent, its last run and recent counts.
#[utoipa::path(get, path = "/agents", tag = "read",
    responses((status = 200, body = AgentsResponse),
        (status = 400, description = "A bad parameter, named in details.fields", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Wrong scope, or an agent outside the token's list", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_agents(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AgentsResponse>, ApiError> {
    caller.require(Scope::Read)?;
    let today = Utc::now().date_naive();
    let agents = state.store.agents_overview(today, &caller.access()).await?;
    Ok(Json(AgentsResponse { agents }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SummariesQuery {
    /// Only this agent's.
    #[param(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")]
    agent_name: Option<String>,
    /// First day (UTC), inclusive; 30 days before `to` when absent.
    #[param(format = Date, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    from: Option<String>,
    /// Last day (UTC), inclusive; today when absent. Not before `from`, and at most 365 days
    /// after it.
    #[param(format = Date, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    to: Option<String>,
}

/// `GET /summaries`: daily summaries per agent over a date range (default: the last 30 days).
#[utoipa::path(get, path = "/summaries", tag = "read", params(SummariesQuery),
    responses((status = 200, body = SummariesResponse),
        (status = 400, description = "A bad parameter, named in details.fields", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Wrong scope, or an agent outside the token's list", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_summaries(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SummariesQuery>,
) -> Result<Json<SummariesResponse>, ApiError> {
    caller.require(Scope::Read)?;
    let agent_name = agent_filter(&caller, query.agent_name.as_deref())?;
    let to = params::date("to", query.to.as_deref())?.unwrap_or_else(|| Utc::now().date_naive());
    let from = params::date("from", query.from.as_deref())?
        .unwrap_or_else(|| to - Days::new(DEFAULT_SUMMARY_DAYS - 1));
    params::range(Some(from), Some(to))?;
    if (to - from).num_days() >= MAX_SUMMARY_DAYS as i64 {
        return Err(ApiError::bad_param(
            "from",
            format!("the range may span at most {MAX_SUMMARY_DAYS} days"),
        ));
    }
    let filter = SummaryFilter {
        agent_name,
        from,
        to,
        access: caller.access(),
    };
    let summaries = state.store.daily_summaries(&filter).await?;
    Ok(Json(SummariesResponse { summaries }))
}
