//! `GET /audit` (scope `read`): every action taken on a job, a run or a silence, newest first.

use agent_sdk::wire::AuditResponse;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::AppState;
use super::api_error::ApiError;
use super::caller::Caller;
use super::extract::ApiQuery;
use super::params;
use super::refusals::ReadRefusals;
use crate::auth::Scope;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Only this job's.
    #[param(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")]
    job: Option<String>,
    /// Entries before this id (the last `id` of the previous page).
    #[param(minimum = 1)]
    before: Option<i64>,
    /// Entries per page; 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// `GET /audit`: every action taken on a job or run, newest first.
#[utoipa::path(get, path = "/audit", tag = "read", params(AuditQuery),
    responses((status = 200, body = AuditResponse), ReadRefusals),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditResponse>, ApiError> {
    caller.require(Scope::Read)?;
    let job = params::agent_filter_as(&caller, "job", query.job.as_deref())?;
    if let Some(before) = query.before
        && before < 1
    {
        return Err(ApiError::bad_param(
            "before",
            format!("must be an entry's id, 1 or more, got {before}"),
        ));
    }
    let entries = state
        .store
        .list_audit(
            &caller.access(),
            job.as_ref().map(|j| j.as_str()),
            query.before,
            params::limit(query.limit)?,
        )
        .await?;
    Ok(Json(AuditResponse { entries }))
}
