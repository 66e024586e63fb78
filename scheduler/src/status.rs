//! The status server (Flower's job): health, jobs, Prometheus, and manual triggers.

use agent_sdk::wire::{ErrorBody, ErrorDetail};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::engine::{Engine, TriggerError};

/// The header that carries `SCHEDULER_TRIGGER_TOKEN` for `POST /jobs/{job}/run`.
pub const TRIGGER_TOKEN_HEADER: &str = "x-trigger-token";

#[derive(Clone)]
pub struct StatusState {
    pub engine: Engine,
    pub spool: agent_sdk::client::Spool,
    /// `None` with `--no-push`.
    pub deliverer: Option<agent_sdk::client::Deliverer>,
    pub trigger_token: Option<String>,
    /// `SCHEDULER_TOKEN_WARN_BEFORE`.
    pub token_warn_before: std::time::Duration,
    pub prometheus: PrometheusHandle,
}

pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/jobs", get(jobs))
        .route("/jobs/{job}/run", post(trigger))
        .route("/prometheus", get(prometheus))
        .with_state(state)
}

/// The collector's error shape, from the one wire type.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.into(),
            details: serde_json::Value::Null,
        },
    };
    (status, Json(body)).into_response()
}

/// 200 while reports can be delivered or kept; 503 saying why when the spool cannot be written
/// (full, read-only) or the collector refuses the token (every report waits in the spool).
/// The token's expiry is shown, with a warning within `token_expiry::WARN_BEFORE` of it.
async fn health(State(state): State<StatusState>) -> Response {
    if let Some(why) = state.deliverer.as_ref().and_then(|d| d.token_refused()) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "token_refused",
            format!(
                "{why}; reports wait in the spool until a token it accepts is given (COLLECTOR_TOKEN_FILE)"
            ),
        );
    }
    let spool = state.spool.clone();
    let writable = tokio::task::spawn_blocking(move || spool.check_writable()).await;
    let depth = state.spool.depth().await.ok();
    match writable {
        Ok(Ok(())) => {
            let mut body = json!({"status": "ok", "spool": {"dir": state.spool.dir(), "writable": true, "depth": depth}});
            if let Some(deliverer) = &state.deliverer {
                body["token"] = crate::token_expiry::health(
                    deliverer.client().token_expires_at(),
                    chrono::Utc::now(),
                    state.token_warn_before,
                );
            }
            Json(body).into_response()
        }
        Ok(Err(err)) => {
            tracing::error!(error = %err, "the spool cannot be written: undeliverable reports would be lost");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "spool_unwritable",
                format!("the spool cannot be written: {err}"),
            )
        }
        Err(join) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "spool_unwritable",
            join.to_string(),
        ),
    }
}

async fn jobs(State(state): State<StatusState>) -> impl IntoResponse {
    Json(json!({"jobs": state.engine.statuses()}))
}

async fn trigger(
    State(state): State<StatusState>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(expected) = &state.trigger_token else {
        return error(
            StatusCode::FORBIDDEN,
            "disabled",
            "manual triggers are disabled: set SCHEDULER_TRIGGER_TOKEN",
        );
    };
    // `X-Trigger-Token`, or `Authorization: Bearer`: behind nginx, `Authorization` carries the
    // status page's Basic login, so the token travels in a header of its own.
    let presented = headers
        .get(TRIGGER_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .unwrap_or_default();
    if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send the trigger token as `X-Trigger-Token: <SCHEDULER_TRIGGER_TOKEN>` (or `Authorization: Bearer <SCHEDULER_TRIGGER_TOKEN>`)",
        );
    }
    match state.engine.trigger(&job) {
        Ok(run_key) => (StatusCode::ACCEPTED, Json(json!({"run_key": run_key}))).into_response(),
        Err(err @ TriggerError::NoSuchJob(_)) => {
            error(StatusCode::NOT_FOUND, "not_found", err.to_string())
        }
        Err(err @ TriggerError::ShuttingDown) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            err.to_string(),
        ),
    }
}

async fn prometheus(State(state): State<StatusState>) -> impl IntoResponse {
    if let Ok(depth) = state.spool.depth().await {
        metrics::gauge!("scheduler_spool_depth").set(depth as f64);
    }
    state.prometheus.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The process-wide Prometheus recorder, with buckets for run durations, and every metric of
/// the scheduler described (its HELP line: what it counts, in which unit).
pub fn prometheus_handle() -> PrometheusHandle {
    let handle = recorder();
    describe();
    handle
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "scheduler_runs_total",
        Unit::Count,
        "Runs finished, by job, agent and status (success, failed)"
    );
    describe_histogram!(
        "scheduler_run_duration_seconds",
        Unit::Seconds,
        "How long each run took, retries included, by job"
    );
    describe_gauge!(
        "scheduler_last_success_timestamp_seconds",
        Unit::Seconds,
        "When each job's last successful run finished, in seconds since the Unix epoch"
    );
    describe_counter!(
        "scheduler_skipped_ticks_total",
        Unit::Count,
        "Slots not run because the job's previous run was still going (concurrency_policy = forbid), by job"
    );
    describe_histogram!(
        "scheduler_fire_lateness_seconds",
        Unit::Seconds,
        "Time from a slot's instant to the moment its run was started"
    );
    describe_counter!(
        "scheduler_runs_not_run_total",
        Unit::Count,
        "Runs fired but not run here, by job and reason: claimed_elsewhere (another scheduler holds the run_key, or it ran already), claim_failed (SCHEDULER_HA and the collector could not be asked)"
    );
    describe_gauge!(
        "scheduler_collector_token_expiry_timestamp_seconds",
        Unit::Seconds,
        "When the collector token expires (its exp claim), in seconds since the Unix epoch; 0 without one"
    );
    describe_gauge!(
        "scheduler_spool_depth",
        Unit::Count,
        "Reports waiting in the spool for redelivery, when last scraped"
    );
}

fn recorder() -> PrometheusHandle {
    agent_sdk::telemetry::prometheus(&[(
        "run_duration_seconds",
        &[
            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
        ],
    )])
}
