//! `GET /health` (the process answers) and `GET /health/ready` (the database answers and is
//! migrated). Neither needs a token.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::api_error::ApiError;

/// Readiness must answer quickly even when the database hangs.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The process answers", body = Object)))]
pub(super) async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "The database answers and is migrated", body = Object),
        (status = 503, description = "Not ready, and why", body = agent_sdk::wire::ErrorBody),
    ))]
pub(super) async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let not_ready =
        |message: String| ApiError::client(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message);
    match tokio::time::timeout(READY_TIMEOUT, state.store.check_ready()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready"}))),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "not ready");
            Err(not_ready(match err {
                crate::store::NotReady::Unreachable(_) => "the database is unreachable".into(),
                other => other.to_string(),
            }))
        }
        Err(_) => Err(not_ready(format!(
            "the database did not answer within {READY_TIMEOUT:?}"
        ))),
    }
}
