//! `POST /metrics`: one run report in, one stored run out; `POST /metrics/batch`: many, each
//! judged on its own.

use agent_sdk::wire::limits::MAX_REPORTS_PER_BATCH;
use agent_sdk::wire::{
    BatchItemResult, BatchRequest, BatchResponse, ErrorBody, IngestResponse, RunReport,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiJson, parse_json};
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
    let run = admit(report, &caller, Utc::now())?;
    tracing::Span::current().record("agent", run.agent_name.as_str());

    let stored = state.ingest.store_one(run).await?;

    tracing::Span::current().record("run_id", stored.run_id());
    Ok((
        status_of(stored),
        Json(IngestResponse {
            run_id: stored.run_id(),
        }),
    ))
}

/// The body of [`BatchRequest`], read lazily: each report is parsed on its own, so a malformed
/// one is refused alone.
#[derive(Deserialize)]
pub(super) struct RawBatch {
    reports: Vec<Box<RawValue>>,
}

/// `200 {"results": [...]}`, one result per report in the order sent: what `POST /metrics`
/// would have answered for it. Valid reports are stored in one transaction; a report that
/// breaks a rule is refused alone, and a run the database refuses fails alone.
#[utoipa::path(
    post, path = "/metrics/batch", tag = "ingest",
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One result per report, in order", body = BatchResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the ingest scope", body = ErrorBody),
        (status = 413, description = "Body over the batch limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "No `reports` list, an empty one, or more than 1000 reports", body = ErrorBody),
        (status = 503, description = "Database unavailable: nothing stored; retry after Retry-After", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "ingest_batch", skip_all, fields(reports, stored))]
pub(super) async fn post_batch(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(batch): ApiJson<RawBatch>,
) -> Result<Json<BatchResponse>, ApiError> {
    caller.require(Scope::Ingest)?;
    let count = batch.reports.len();
    tracing::Span::current().record("reports", count);
    if !(1..=MAX_REPORTS_PER_BATCH).contains(&count) {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "reports",
            format!("a batch holds 1 to {MAX_REPORTS_PER_BATCH} reports, not {count}"),
        ));
    }

    let now = Utc::now();
    let mut results: Vec<Option<BatchItemResult>> = Vec::with_capacity(count);
    let mut runs = Vec::with_capacity(count);
    for raw in &batch.reports {
        let admitted = parse_json::<RunReport>(raw.get().as_bytes())
            .and_then(|report| admit(report, &caller, now));
        match admitted {
            Ok(run) => {
                runs.push(run);
                results.push(None);
            }
            Err(err) => results.push(Some(item_result(Err(err)))),
        }
    }
    drop(batch);

    // An unavailable database refuses the whole transaction: nothing was stored, so the whole
    // request is answered 503 and may be retried as it is.
    let outcomes = if runs.is_empty() {
        Vec::new()
    } else {
        state.ingest.store_batch(&runs).await?
    };

    let mut stored = 0;
    let mut outcomes = outcomes.into_iter();
    let results = results
        .into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| match outcomes.next() {
                Some(Ok(outcome)) => {
                    stored += 1;
                    item_result(Ok((status_of(outcome), outcome.run_id())))
                }
                Some(Err(err)) => item_result(Err(err.into())),
                None => item_result(Err(anyhow::anyhow!("a batch outcome is missing").into())),
            })
        })
        .collect();
    tracing::Span::current().record("stored", stored);
    Ok(Json(BatchResponse { results }))
}

/// Checks a parsed report against the contract and the caller's token.
fn admit(report: RunReport, caller: &Caller, now: DateTime<Utc>) -> Result<NewRun, ApiError> {
    let run = NewRun::parse(report, now).map_err(|e| ApiError::validation(&e))?;
    caller.require_agent(run.agent_name.as_str())?;
    Ok(run)
}

/// 201 for a new run, 200 for a `run_key` stored before.
fn status_of(stored: Stored) -> StatusCode {
    match stored {
        Stored::Created(_) => StatusCode::CREATED,
        Stored::Existing(_) => StatusCode::OK,
    }
}

fn item_result(outcome: Result<(StatusCode, i64), ApiError>) -> BatchItemResult {
    match outcome {
        Ok((status, run_id)) => BatchItemResult {
            status: status.as_u16(),
            run_id: Some(run_id),
            error: None,
        },
        Err(err) => {
            let (status, body) = err.into_body();
            BatchItemResult {
                status: status.as_u16(),
                run_id: None,
                error: Some(body.error),
            }
        }
    }
}
