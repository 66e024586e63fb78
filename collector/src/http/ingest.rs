//! `POST /metrics`: one run report in, one stored run out.

use agent_sdk::wire::{ErrorBody, IngestResponse, RunReport};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::ApiJson;
use crate::auth::Scope;
use crate::domain::NewRun;
use crate::store::Stored;

/// `201 {"run_id"}` for a new run; `200` with the same id when its `run_key` was stored before.
#[utoipa::path(
    post, path = "/metrics", tag = "ingest",
    request_body(content = RunReport, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored", body = IngestResponse),
        (status = 200, description = "This run_key was stored before; nothing written", body = IngestResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Wrong scope, or an agent outside the token's list", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A rule of the contract is broken; details.fields names each field", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "ingest", skip_all, fields(agent, run_id))]
pub(super) async fn post_metrics(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(report): ApiJson<RunReport>,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    caller.require(Scope::Ingest)?;
    let run = NewRun::parse(report, Utc::now()).map_err(|e| ApiError::validation(&e))?;
    caller.require_agent(run.agent_name.as_str())?;
    tracing::Span::current().record("agent", run.agent_name.as_str());

    let (status, metric_count, run_key) = (run.status, run.metrics.len(), run.run_key);
    let stored = state.batcher.store(run).await?;

    tracing::Span::current().record("run_id", stored.run_id());
    let status = match stored {
        Stored::Created(_) => {
            metrics::counter!("collector_runs_stored_total", "status" => status.as_str())
                .increment(1);
            metrics::counter!("collector_metrics_stored_total").increment(metric_count as u64);
            StatusCode::CREATED
        }
        Stored::Existing(_) => {
            metrics::counter!("collector_runs_duplicate_total").increment(1);
            tracing::info!(%run_key, "run_key seen before: nothing written");
            StatusCode::OK
        }
    };
    Ok((
        status,
        Json(IngestResponse {
            run_id: stored.run_id(),
        }),
    ))
}
