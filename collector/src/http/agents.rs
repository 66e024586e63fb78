//! Agents (scope `read`): `GET /agents`, each agent's latest state, and `GET /summaries`, its
//! daily summaries.

use agent_sdk::wire::{AgentsResponse, SummariesResponse};
use axum::Json;
use axum::extract::State;
use chrono::{Days, Utc};
use serde::Deserialize;

use super::AppState;
use super::api_error::ApiError;
use super::caller::Caller;
use super::extract::ApiQuery;
use super::params::{self, agent_filter};
use super::refusals::ReadRefusals;
use crate::auth::Scope;
use crate::store::SummaryFilter;

/// The longest date range `GET /summaries` serves in one answer.
const MAX_SUMMARY_DAYS: u64 = 366;
/// `GET /summaries` without `from`: this many days up to `to`.
const DEFAULT_SUMMARY_DAYS: u64 = 30;

/// `GET /agents`: per agent, its last run and recent counts.
#[utoipa::path(get, path = "/agents", tag = "read",
    responses((status = 200, body = AgentsResponse),
        ReadRefusals,
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
        ReadRefusals,
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
