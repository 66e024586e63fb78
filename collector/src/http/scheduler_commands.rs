//! `GET /scheduler/commands` (scope `ingest`): what a scheduler replica is to do now, polled
//! every second: the jobs paused, the runs asked for (and backfilled slots) that no replica has
//! started, the cancels of the runs it claimed. How the operators' actions reach the replicas.

use agent_sdk::wire::Commands;
use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde::Deserialize;

use super::AppState;
use super::api_error::ApiError;
use super::caller::Caller;
use super::extract::ApiQuery;
use super::refusals::ReadRefusals;
use crate::auth::Scope;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct CommandsQuery {
    /// The replica asking, as its starts name it (`claimant` of `POST /runs`).
    #[param(min_length = 1, max_length = 255, pattern = r"^[^\x00]*$")]
    claimant: String,
}

/// `GET /scheduler/commands`: what a scheduler replica is to do now: the jobs paused, the runs
/// asked for that no replica has started, and the cancels of its own runs. Polled each second.
#[utoipa::path(get, path = "/scheduler/commands", tag = "ingest", params(CommandsQuery),
    responses((status = 200, body = Commands), ReadRefusals),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn scheduler_commands(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CommandsQuery>,
) -> Result<Json<Commands>, ApiError> {
    caller.require(Scope::Ingest)?;
    let chars = query.claimant.chars().count();
    if chars == 0 || chars > 255 || query.claimant.contains('\0') {
        return Err(ApiError::bad_param(
            "claimant",
            "must be 1 to 255 characters long, without NUL",
        ));
    }
    let commands = state
        .store
        .commands_for(&query.claimant, &caller.access(), Utc::now())
        .await?;
    Ok(Json(commands))
}
