//! Incidents (scope `read`): `GET /incidents`, and the slots behind them, `GET /missed` and
//! `GET /late`.

use agent_sdk::wire::{IncidentsResponse, LateResponse, MissedResponse};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::AppState;
use super::api_error::ApiError;
use super::caller::Caller;
use super::extract::ApiQuery;
use super::params::{self, agent_filter};
use super::refusals::ReadRefusals;
use crate::auth::Scope;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SlotsQuery {
    /// Only this agent's.
    #[param(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")]
    agent_name: Option<String>,
    /// Rows; 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// `GET /missed`: slots no run answered within their grace, newest detection first.
#[utoipa::path(get, path = "/missed", tag = "read", params(SlotsQuery),
    responses((status = 200, body = MissedResponse),
        ReadRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_missed(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SlotsQuery>,
) -> Result<Json<MissedResponse>, ApiError> {
    caller.require(Scope::Read)?;
    let agent = agent_filter(&caller, query.agent_name.as_deref())?;
    let missed = state
        .store
        .list_missed(
            agent.as_ref(),
            &caller.access(),
            params::limit(query.limit)?,
        )
        .await?;
    Ok(Json(MissedResponse { missed }))
}

/// `GET /late`: slots answered by a run that started more than `SLOT_LATE_AFTER` after them
/// (within their grace), newest detection first.
#[utoipa::path(get, path = "/late", tag = "read", params(SlotsQuery),
    responses((status = 200, body = LateResponse),
        ReadRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_late(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SlotsQuery>,
) -> Result<Json<LateResponse>, ApiError> {
    caller.require(Scope::Read)?;
    let agent = agent_filter(&caller, query.agent_name.as_deref())?;
    let late = state
        .store
        .list_late(
            agent.as_ref(),
            &caller.access(),
            params::limit(query.limit)?,
        )
        .await?;
    Ok(Json(LateResponse { late }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct IncidentsQuery {
    /// `true`: open ones only; `false`: resolved ones only.
    open: Option<bool>,
    /// Only this agent's.
    #[param(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")]
    agent_name: Option<String>,
    /// Rows; 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// `GET /incidents`: open ones first, then the latest opened.
#[utoipa::path(get, path = "/incidents", tag = "read", params(IncidentsQuery),
    responses((status = 200, body = IncidentsResponse),
        ReadRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_incidents(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<IncidentsQuery>,
) -> Result<Json<IncidentsResponse>, ApiError> {
    caller.require(Scope::Read)?;
    let agent = agent_filter(&caller, query.agent_name.as_deref())?;
    let incidents = state
        .store
        .list_incidents(
            query.open,
            agent.as_ref(),
            &caller.access(),
            params::limit(query.limit)?,
        )
        .await?;
    Ok(Json(IncidentsResponse { incidents }))
}
